"""Configuration of the DeepDubber reasoner: a vision tower, a pixel-shuffle projector and a causal language model."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

# The tiny default: a few million parameters that train on a laptop CPU (see `examples/train_sft.py`).
TINY_VISION_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "image_size": 128,
    "patch_size": 16,
    "vision_use_head": False,
}
TINY_TEXT_CONFIG = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
}


@strict
class DeepDubberReasonerConfig(PreTrainedConfig):
    r"""Configuration of [`DeepDubberReasonerForConditionalGeneration`] (§3.2 of the paper, LLaVA-style).

    A clip enters as `num_frames` frames; each frame goes through the vision tower, its patch grid is folded by
    `scale_factor` (pixel shuffle: `scale_factor²` neighbouring patches become one token) and projected into the
    language model, where it replaces the `<image>` placeholders that follow `Frame{i}:` in the prompt.

    Args:
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            Any transformers vision model whose output has a square patch grid and no class token (defaults to a
            SigLIP vision tower without pooling head).
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Any transformers causal language model (defaults to Llama).
        image_token_id (`int`, *optional*, defaults to 4):
            Id of the `<image>` placeholder token.
        scale_factor (`int`, *optional*, defaults to 2):
            Pixel-shuffle factor of the projector; `(image_size / patch_size / scale_factor)²` tokens per frame.
        projector_hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation between the projector's two linear layers.
        num_frames (`int`, *optional*, defaults to 10):
            Frames sampled per clip by the processor (the first, the last and the rest evenly between them).
        tie_word_embeddings (`bool`, *optional*, defaults to `True`):
            Share the language model's input embeddings with its output head.

    Example:

    ```py
    >>> from deepdubber_hf.reasoner import DeepDubberReasonerConfig, DeepDubberReasonerForConditionalGeneration
    >>> config = DeepDubberReasonerConfig.tiny(vocab_size=512)
    >>> model = DeepDubberReasonerForConditionalGeneration(config)
    >>> config.image_seq_length
    4
    ```
    """

    model_type = "deepdubber_reasoner"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="siglip_vision_model", init_kwargs=TINY_VISION_CONFIG
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", init_kwargs=TINY_TEXT_CONFIG),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 4
    scale_factor: int = 2
    projector_hidden_act: str = "gelu"
    num_frames: int = 10
    tie_word_embeddings: bool = True

    def validate_architecture(self):
        """Check that the patch grid folds evenly."""
        grid = self.vision_config.image_size // self.vision_config.patch_size
        if grid * self.vision_config.patch_size != self.vision_config.image_size or grid % self.scale_factor:
            raise ValueError(
                f"vision_config.image_size ({self.vision_config.image_size}) must be a multiple of patch_size "
                f"({self.vision_config.patch_size}) times scale_factor ({self.scale_factor}); change one of them."
            )

    @property
    def image_seq_length(self) -> int:
        """Tokens one frame becomes in the language model."""
        grid = self.vision_config.image_size // self.vision_config.patch_size // self.scale_factor
        return grid * grid

    @classmethod
    def tiny(cls, vocab_size: int, **kwargs) -> "DeepDubberReasonerConfig":
        """The tiny default (about 1 M parameters with a 1k vocabulary) for a tokenizer of `vocab_size` tokens."""
        text_config = {**TINY_TEXT_CONFIG, "vocab_size": vocab_size, **kwargs.pop("text_config", {})}
        # 4×4 patches per token: 4 tokens per frame keep the language model's sequence (its cost) short.
        kwargs.setdefault("scale_factor", 4)
        return cls(text_config={"model_type": "llama", **text_config}, **kwargs)


__all__ = ["DeepDubberReasonerConfig", "TINY_TEXT_CONFIG", "TINY_VISION_CONFIG"]
