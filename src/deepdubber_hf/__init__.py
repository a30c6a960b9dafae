"""DeepDubber-HF: movie dubbing with video chain-of-thought reasoning and flow-matching speech generation.

The public classes are imported lazily (PEP 562), so that light entry points such as the corpus generator do not
pay for importing torch, diffusers and transformers until a model is needed.
"""

import importlib

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "DeepDubberControlNetModel": ".models",
    "DeepDubberControlNetOutput": ".models",
    "DeepDubberPipeline": ".pipelines",
    "DeepDubberPipelineOutput": ".pipelines",
    "DeepDubberReasonerConfig": ".reasoner",
    "DeepDubberReasonerForConditionalGeneration": ".reasoner",
    "DeepDubberReasonerProcessor": ".reasoner",
    "DubbingConclusion": ".reasoner",
    "DeepDubberTokenizer": ".text",
    "DiTTransformerModel": ".models",
    "DurationPredictorModel": ".models",
    "DurationPredictorOutput": ".models",
    "DiTTransformerOutput": ".models",
    "FlowMatchSwayScheduler": ".schedulers",
    "FlowMatchSwaySchedulerOutput": ".schedulers",
    "GriffinLimVocoder": ".models",
    "VocosVocoder": ".models",
}


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
