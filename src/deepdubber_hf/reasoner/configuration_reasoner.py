"""Configuration of the DeepDubber reasoner: a vision tower, a pixel-shuffle projector and a causal language model."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

# The tiny default: a few million parameters that train on a laptop CPU (see `examples/train_sft.py`).
# A small ConvNeXt-V2: trained from scratch on a few thousand clips, a convolutional tower learns the small cues
# (an open mouth, grey hair) far sooner than a ViT of the same size, whose early features are dominated by its
# position embeddings (measured: a 4-layer SigLIP tower left the tiny reasoner at chance after 600 SFT steps).
TINY_VISION_CONFIG = {
    "num_channels": 3,
    "patch_size": 4,
    "hidden_sizes": [32, 64, 128],
    "depths": [1, 1, 2],
    "num_stages": 3,
    "image_size": 128,
}
# A small ResNet: its stem is a full-resolution 7×7 convolution, where ConvNeXt's first layer folds 4×4 pixels into
# one cell. Measured with examples/pretrain_vision_tower.py (benchmarks/RESULTS.md): the ConvNeXt above barely learns
# whether a mouth is open (its mouth heads end 1-4 points above the commonest label after 2500 steps), this ResNet
# learns it better (5-12 points above after 1500 steps) and every other head too, in less time per step.
TINY_RESNET_VISION_CONFIG = {
    "num_channels": 3,
    "embedding_size": 32,
    "hidden_sizes": [32, 64, 128],
    "depths": [1, 1, 2],
    "layer_type": "basic",
    "image_size": 128,
}
TINY_VISION_CONFIGS = {"convnextv2": TINY_VISION_CONFIG, "resnet": TINY_RESNET_VISION_CONFIG}
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
            Any transformers vision model whose `last_hidden_state` is a square grid of features: a ViT without
            class token (`(f, p, c)`, e.g. SigLIP with `vision_use_head=False`) or a convolutional network
            (`(f, c, h, w)`, e.g. ConvNeXt-V2, the default).
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Any transformers causal language model (defaults to Llama).
        image_token_id (`int`, *optional*, defaults to 4):
            Id of the `<image>` placeholder token.
        scale_factor (`int`, *optional*, defaults to 2):
            Pixel-shuffle factor of the projector; `(image_size / patch_size / scale_factor)²` tokens per frame.
        pooled_regions (`int`, *optional*, defaults to 0):
            With `n > 0`, each frame also gives `1 + n` pooled tokens: the whole feature grid and `n` side-by-side
            vertical strips of it, each pooled by its mean and its maximum. A small detector's answer (an open
            mouth, an eyebrow) fills one cell of the grid; in a pixel-shuffled token it is one of `scale_factor²`
            positions the projector must learn separately, in a pooled token it is the same feature wherever it
            appears. The strips match the left / middle / right slots the vision tower is pre-trained on
            (`examples/pretrain_vision_tower.py`). The tiny default uses 3.
        temporal_pooling (`bool`, *optional*, defaults to `False`):
            With pooled tokens, each frame's pooled tokens also read their region's mean and standard deviation over
            all `num_frames` frames of the clip. Who talks is what tells a monologue from a narration or a
            dialogue: a talking mouth opens and closes across the frames, so its region's features vary where a
            still one's do not, and a tower's per-frame errors average out over the clip. Without it the language
            model must learn to compare ten frames by attention alone. Frames must then come in whole clips of
            `num_frames` (as the processor gives them). The tiny default uses it. Measured on the procedural
            corpus (benchmarks/RESULTS.md): the same level-1 scene accuracy as without (83.5 % after QA SFT),
            6.5 points more on gender, and the misses left are clips with two visible characters.
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
    >>> config.image_seq_length  # 2 × 2 pixel-shuffled tokens + the frame and 3 strips pooled
    8
    ```
    """

    model_type = "deepdubber_reasoner"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="convnextv2", init_kwargs=TINY_VISION_CONFIG),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", init_kwargs=TINY_TEXT_CONFIG),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 4
    scale_factor: int = 2
    pooled_regions: int = 0
    temporal_pooling: bool = False
    projector_hidden_act: str = "gelu"
    num_frames: int = 10
    tie_word_embeddings: bool = True

    def validate_architecture(self):
        """Check that the feature grid folds evenly."""
        stride = self.vision_stride
        if self.pooled_regions < 0:
            raise ValueError(f"pooled_regions must be 0 (none) or a positive number of strips, got {self.pooled_regions}.")
        if self.vision_config.image_size % (stride * self.scale_factor):
            raise ValueError(
                f"vision_config.image_size ({self.vision_config.image_size}) must be a multiple of the vision "
                f"tower's stride ({stride}) times scale_factor ({self.scale_factor}); change one of them."
            )

    @property
    def vision_stride(self) -> int:
        """Pixels per feature-grid cell: the patch size (4 for a ResNet's stem), times 2 per later stage of a
        convolutional tower."""
        vision = self.vision_config
        stages = len(getattr(vision, "hidden_sizes", None) or [None])
        if vision.model_type == "resnet":  # a stride-2 convolution and a stride-2 max-pool, then stride 2 per stage
            return 4 * 2 ** (stages - 1 + int(vision.downsample_in_first_stage))
        return vision.patch_size * 2 ** (stages - 1)

    @property
    def image_seq_length(self) -> int:
        """Tokens one frame becomes in the language model."""
        grid = self.vision_config.image_size // self.vision_stride // self.scale_factor
        return grid * grid + (1 + self.pooled_regions if self.pooled_regions else 0)

    @classmethod
    def tiny(cls, vocab_size: int, **kwargs) -> "DeepDubberReasonerConfig":
        """The tiny default (about 1 M parameters with a 1k vocabulary) for a tokenizer of `vocab_size` tokens."""
        text_config = {**TINY_TEXT_CONFIG, "vocab_size": vocab_size, **kwargs.pop("text_config", {})}
        # 4×4 patches per token: 4 tokens per frame keep the language model's sequence (its cost) short; 4 pooled
        # tokens (the frame, its left / middle / right thirds) carry the small details at any position.
        kwargs.setdefault("scale_factor", 4)
        kwargs.setdefault("pooled_regions", 3)
        kwargs.setdefault("temporal_pooling", True)
        return cls(text_config={"model_type": "llama", **text_config}, **kwargs)


__all__ = [
    "DeepDubberReasonerConfig",
    "TINY_RESNET_VISION_CONFIG",
    "TINY_TEXT_CONFIG",
    "TINY_VISION_CONFIG",
    "TINY_VISION_CONFIGS",
]
