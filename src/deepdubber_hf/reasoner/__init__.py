"""Stage 1 of DeepDubber: the video chain-of-thought reasoner, its processor, CoT format and MPO trainer."""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

from .configuration_reasoner import DeepDubberReasonerConfig
from .cot import TAGS, DubbingConclusion, format_cot
from .modeling_reasoner import (
    DeepDubberReasonerForConditionalGeneration,
    DeepDubberReasonerModel,
    DeepDubberReasonerPreTrainedModel,
)
from .processing_reasoner import (
    DeepDubberReasonerProcessor,
    build_messages,
    load_video_frames,
    sample_frame_indices,
    train_reasoner_tokenizer,
)

# Registered with the Auto classes so `AutoModelForImageTextToText.from_pretrained(folder)` works once this
# package is imported (and trl's trainers, which load through the Auto classes, accept the reasoner).
AutoConfig.register(DeepDubberReasonerConfig.model_type, DeepDubberReasonerConfig, exist_ok=True)
AutoModel.register(DeepDubberReasonerConfig, DeepDubberReasonerModel, exist_ok=True)
AutoModelForImageTextToText.register(
    DeepDubberReasonerConfig, DeepDubberReasonerForConditionalGeneration, exist_ok=True
)
AutoProcessor.register(DeepDubberReasonerConfig, DeepDubberReasonerProcessor, exist_ok=True)

__all__ = [
    "TAGS",
    "DeepDubberReasonerConfig",
    "DeepDubberReasonerForConditionalGeneration",
    "DeepDubberReasonerModel",
    "DeepDubberReasonerPreTrainedModel",
    "DeepDubberReasonerProcessor",
    "DubbingConclusion",
    "build_messages",
    "format_cot",
    "load_video_frames",
    "sample_frame_indices",
    "train_reasoner_tokenizer",
]
