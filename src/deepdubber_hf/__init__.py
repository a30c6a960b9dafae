"""DeepDubber-HF: movie dubbing with video chain-of-thought reasoning and flow-matching speech generation."""

__version__ = "0.1.0.dev0"

from .models import DiTTransformerModel, DiTTransformerOutput, VocosVocoder  # noqa: E402
from .pipelines import DeepDubberPipeline, DeepDubberPipelineOutput  # noqa: E402
from .schedulers import FlowMatchSwayScheduler, FlowMatchSwaySchedulerOutput  # noqa: E402
from .text import DeepDubberTokenizer  # noqa: E402

__all__ = [
    "DeepDubberPipeline",
    "DeepDubberPipelineOutput",
    "DeepDubberTokenizer",
    "DiTTransformerModel",
    "DiTTransformerOutput",
    "FlowMatchSwayScheduler",
    "FlowMatchSwaySchedulerOutput",
    "VocosVocoder",
]
