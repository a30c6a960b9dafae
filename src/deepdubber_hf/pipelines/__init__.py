from .pipeline_deepdubber import DeepDubberPipeline, DeepDubberPipelineOutput

__all__ = ["DeepDubberPipeline", "DeepDubberPipelineOutput"]
