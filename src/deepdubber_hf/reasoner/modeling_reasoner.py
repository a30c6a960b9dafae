"""The DeepDubber reasoner (§3.2 of the paper): frames → vision tower → pixel-shuffle projector → causal LM → CoT.

Shapes: `b` batch, `f` frames (images) in the batch, `p` patches per frame, `t` tokens per frame after the
projector, `s` text positions, `d` language-model width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPast, BaseModelOutputWithPooling, ModelOutput
from transformers.utils import logging

from .configuration_reasoner import DeepDubberReasonerConfig

logger = logging.get_logger(__name__)


@dataclass
class DeepDubberReasonerModelOutput(BaseModelOutputWithPast):
    """The language model's output, plus the projected frame features (`(f, t, d)`) when frames were given."""

    image_hidden_states: torch.Tensor | None = None


@dataclass
class DeepDubberReasonerCausalLMOutput(ModelOutput):
    """`loss` (next-token cross-entropy over `labels != -100`), `logits` `(b, s, vocab)`, the cache and the frame
    features."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: object | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    image_hidden_states: torch.Tensor | None = None


def pool_regions(grid: torch.Tensor, num_regions: int) -> torch.Tensor:
    """A feature grid `(f, c, h, w)` pooled over the whole frame and `num_regions` vertical strips from left to
    right, each by its mean and its maximum side by side: `(f, 1 + num_regions, 2c)`."""
    whole = torch.cat([grid.mean((2, 3)), grid.amax((2, 3))], dim=1)[:, None]  # (f, 1, 2c)
    shape = (1, num_regions)
    strips = torch.cat([nn.functional.adaptive_avg_pool2d(grid, shape), nn.functional.adaptive_max_pool2d(grid, shape)],
                       dim=1).flatten(2).transpose(1, 2)  # (f, n, 2c)  # fmt: skip
    return torch.cat([whole, strips], dim=1)


def clip_statistics(pooled: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Per-frame pooled features `(f, r, c)` of consecutive clips of `num_frames` frames each → every frame's features
    with its clip's mean and standard deviation over the frames beside them, `(f, r, 3c)`."""
    f = pooled.shape[0]
    if f % num_frames:
        raise ValueError(
            f"temporal pooling reads clips of {num_frames} frames (config.num_frames), but {f} frames were given; pass "
            "whole clips (DeepDubberReasonerProcessor samples config.num_frames per clip) or set "
            "config.temporal_pooling=False."
        )
    clips = pooled.reshape(f // num_frames, num_frames, *pooled.shape[1:])  # (clips, n, r, c)
    stats = torch.cat([clips.mean(1), clips.std(1, correction=0)], dim=-1).repeat_interleave(num_frames, dim=0)
    return torch.cat([pooled, stats], dim=-1)


class DeepDubberReasonerProjector(nn.Module):
    """Pixel shuffle then a two-layer MLP (as SmolVLM / InternVL): `scale_factor²` neighbouring patches → one token;
    with `config.pooled_regions`, pooled tokens after them (with `config.temporal_pooling`, each also reading its
    region's mean and spread over the clip's frames).

    Folding the grid keeps a clip's language-model sequence short (the tiny default folds 4×4 patches: 4 tokens
    per frame) while nothing is pooled away: each token carries its patches' features side by side, a mouth still
    at full patch resolution. The pooled tokens (the whole grid and `pooled_regions` vertical strips, each as its
    mean and maximum, through their own MLP) give the same features wherever in the frame they appear.
    """

    def __init__(self, config: DeepDubberReasonerConfig):
        super().__init__()
        self.scale_factor = config.scale_factor
        self.pooled_regions = config.pooled_regions
        self.temporal_frames = config.num_frames if config.temporal_pooling and config.pooled_regions else 0
        vision_width = getattr(config.vision_config, "hidden_size", None)
        if getattr(config.vision_config, "hidden_sizes", None):  # a convolutional tower: its last stage's width
            vision_width = config.vision_config.hidden_sizes[-1]
        width = config.text_config.hidden_size
        self.act = ACT2FN[config.projector_hidden_act]
        self.norm, self.linear_1, self.linear_2 = self._mlp(vision_width * config.scale_factor**2, width)
        if self.pooled_regions:
            pooled_width = 2 * vision_width * (3 if self.temporal_frames else 1)
            self.pooled_norm, self.pooled_linear_1, self.pooled_linear_2 = self._mlp(pooled_width, width)

    @staticmethod
    def _mlp(in_features: int, width: int) -> tuple:
        return nn.LayerNorm(in_features), nn.Linear(in_features, width), nn.Linear(width, width)

    def forward(self, patch_features: torch.Tensor) -> torch.Tensor:
        f, p, c = patch_features.shape
        side = int(round(p**0.5))
        k = self.scale_factor
        x = patch_features.reshape(f, side // k, k, side // k, k, c)  # (f, rows, k, cols, k, c)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(f, (side // k) ** 2, k * k * c)  # (f, t, k²c)
        tokens = self.linear_2(self.act(self.linear_1(self.norm(x))))  # (f, t, d)
        if not self.pooled_regions:
            return tokens
        pooled = pool_regions(patch_features.transpose(1, 2).reshape(f, c, side, side), self.pooled_regions)
        if self.temporal_frames:
            pooled = clip_statistics(pooled, self.temporal_frames)  # (f, 1 + n, 6c)
        pooled = self.pooled_linear_2(self.act(self.pooled_linear_1(self.pooled_norm(pooled))))
        return torch.cat([tokens, pooled], dim=1)  # (f, t + 1 + n, d)


class DeepDubberReasonerPreTrainedModel(PreTrainedModel):
    config: DeepDubberReasonerConfig
    config_class = DeepDubberReasonerConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True


class DeepDubberReasonerModel(DeepDubberReasonerPreTrainedModel):
    """Vision tower, projector and language model without the output head; frames replace `<image>` tokens."""

    def __init__(self, config: DeepDubberReasonerConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = DeepDubberReasonerProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_image_features(self, pixel_values: torch.Tensor, return_dict: bool = True, **kwargs):
        """Frames `(f, 3, H, W)` → `pooler_output` of shape `(f, t, d)` (the tokens that replace `<image>`)."""
        dtype = next(self.vision_tower.parameters()).dtype
        patches = self.vision_tower(pixel_values=pixel_values.to(dtype)).last_hidden_state
        if patches.ndim == 4:  # a convolutional tower's (f, c, h, w) grid
            patches = patches.flatten(2).transpose(1, 2)  # (f, p, c)
        features = self.multi_modal_projector(patches)  # (f, t, d)
        return BaseModelOutputWithPooling(last_hidden_state=patches, pooler_output=features)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ) -> DeepDubberReasonerModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # (b, s, d)

        mm_encoder_outputs = dict(mm_encoder_outputs or {})
        if mm_encoder_outputs.get("image") is None and pixel_values is not None:
            mm_encoder_outputs["image"] = self.get_image_features(pixel_values)
        image_features = None
        if mm_encoder_outputs.get("image") is not None:
            image_features = mm_encoder_outputs["image"].pooler_output  # (f, t, d)
            image_features = image_features.to(inputs_embeds.device, inputs_embeds.dtype)
            if input_ids is not None:
                placeholders = input_ids == self.config.image_token_id  # (b, s)
            else:
                image_embedding = self.get_input_embeddings().weight[self.config.image_token_id]
                placeholders = (inputs_embeds == image_embedding).all(-1)
            if int(placeholders.sum()) != image_features.shape[0] * image_features.shape[1]:
                raise ValueError(
                    f"The prompt has {int(placeholders.sum())} <image> tokens but the frames give "
                    f"{image_features.shape[0]} × {image_features.shape[1]} features; build inputs with "
                    "DeepDubberReasonerProcessor, which expands each <image> to `image_seq_length` tokens."
                )
            inputs_embeds = inputs_embeds.masked_scatter(placeholders[..., None], image_features.reshape(-1))

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return DeepDubberReasonerModelOutput(
            last_hidden_state=outputs.last_hidden_state,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=image_features,
        )


class DeepDubberReasonerForConditionalGeneration(DeepDubberReasonerPreTrainedModel, GenerationMixin):
    r"""The reasoner with its language-model head: `generate()` on a clip's frames writes the CoT.

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf.reasoner import (DeepDubberReasonerConfig, DeepDubberReasonerForConditionalGeneration,
    ...                                     DeepDubberReasonerProcessor, train_reasoner_tokenizer)
    >>> tokenizer = train_reasoner_tokenizer(["<SUMMARY>a man talks</SUMMARY>"], vocab_size=300)
    >>> processor = DeepDubberReasonerProcessor.from_tokenizer(tokenizer, num_frames=3)
    >>> model = DeepDubberReasonerForConditionalGeneration(
    ...     DeepDubberReasonerConfig.tiny(vocab_size=len(tokenizer), num_frames=3))
    >>> inputs = processor.prepare_video(torch.zeros(5, 3, 128, 160, dtype=torch.uint8))
    >>> out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    >>> out.shape[1] == inputs["input_ids"].shape[1] + 4
    True
    ```
    """

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: DeepDubberReasonerConfig):
        super().__init__(config)
        self.model = DeepDubberReasonerModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs):
        return self.model.get_image_features(pixel_values, **kwargs)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ) -> DeepDubberReasonerCausalLMOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(b, s)`):
                The prompt and response tokens; each frame is `image_seq_length` `<image>` tokens.
            pixel_values (`torch.Tensor` of shape `(f, 3, H, W)`, *optional*):
                All frames of the batch, in prompt order.
            labels (`torch.LongTensor` of shape `(b, s)`, *optional*):
                Targets for the next-token loss; `-100` positions (prompt, padding) are ignored.
            logits_to_keep (`int` or `torch.Tensor`, *optional*, defaults to 0):
                Compute logits only for the last `logits_to_keep` positions (0: all).
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state  # (b, s, d)
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])  # (b, s', vocab)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size)
        return DeepDubberReasonerCausalLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=outputs.image_hidden_states,
        )


__all__ = [
    "DeepDubberReasonerForConditionalGeneration",
    "DeepDubberReasonerModel",
    "DeepDubberReasonerPreTrainedModel",
    "DeepDubberReasonerProjector",
    "clip_statistics",
]
