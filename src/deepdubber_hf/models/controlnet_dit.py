"""The ControlNet of stage 2.2 (§3.3.2, eq. 17): video features and the reasoner's conclusion steer the frozen DiT.

Shape legend: ``b`` batch, ``n`` mel frames, ``m`` conclusion tokens, ``c`` mel channels, ``d`` width, ``dv`` video
feature width, ``dc`` conclusion feature width.

The pattern is diffusers' SD3 ControlNet: a trainable copy of the first blocks of the base transformer, whose
input also receives the condition through a zero-initialised projection, and one zero-initialised linear layer
per copied block whose output is added to the base transformer's hidden states. At initialisation every residual
is zero, so the base model's speech is unchanged until training teaches the copy something.

The condition is the fusion of eq. 17: the video features `V_l` (one per mel frame) attend to the encoded
conclusion `C_v` (scene type, gender, age, emotion as text through a T5 encoder) in a cross-attention layer.
Each of video and conclusion can be dropped per sample (classifier-free guidance, eq. 20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .transformer_dit import DiTTransformerModel, _batch_flags, dit_trunk


@dataclass
class DeepDubberControlNetOutput(BaseOutput):
    """
    Args:
        controlnet_block_samples (`tuple` of `torch.Tensor` of shape `(batch_size, num_frames, dim)`):
            One residual per ControlNet block, for `DiTTransformerModel(block_controlnet_hidden_states=...)`.
    """

    controlnet_block_samples: tuple


def _zero_linear(dim_in: int, dim_out: int) -> nn.Linear:
    layer = nn.Linear(dim_in, dim_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class DeepDubberControlNetModel(ModelMixin, ConfigMixin):
    r"""
    Residuals for the base [`DiTTransformerModel`] from video features and conclusion embeddings.

    Args:
        in_channels, num_layers, num_attention_heads, attention_head_dim, mlp_ratio, vocab_size, text_embed_dim,
        num_text_conv_layers, text_conv_mult, text_mask_padding, text_upsampling, qk_norm, dropout,
        attention_mask_keys, rotary_heads:
            As in [`DiTTransformerModel`]; `num_layers` is the number of copied blocks (fewer than the base's).
        video_dim (`int`, *optional*, defaults to 512):
            Width of the video features (a CLIP vision model's projection).
        condition_dim (`int`, *optional*, defaults to 512):
            Width of the conclusion embeddings (a T5 encoder's hidden size).
        num_fusion_heads (`int`, *optional*, defaults to 4):
            Heads of the cross-attention from video features to conclusion tokens.

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf import DeepDubberControlNetModel, DiTTransformerModel
    >>> base = DiTTransformerModel(num_layers=4, num_attention_heads=2, attention_head_dim=16, vocab_size=32,
    ...                            text_embed_dim=16, num_text_conv_layers=1)
    >>> controlnet = DeepDubberControlNetModel.from_transformer(base, num_layers=2, video_dim=8, condition_dim=12)
    >>> mel = torch.randn(1, 50, 100)
    >>> residuals = controlnet(mel, cond=torch.zeros_like(mel), timestep=torch.tensor([0.5]),
    ...                        text_ids=torch.tensor([[3, 4, 5]]), video_features=torch.randn(1, 50, 8),
    ...                        condition_embeds=torch.randn(1, 6, 12)).controlnet_block_samples
    >>> len(residuals), float(residuals[0].abs().max())  # zero until trained
    (2, 0.0)
    ```
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 100,
        num_layers: int = 4,
        num_attention_heads: int = 16,
        attention_head_dim: int = 64,
        mlp_ratio: float = 2.0,
        vocab_size: int = 256,
        text_embed_dim: int = 512,
        num_text_conv_layers: int = 4,
        text_conv_mult: int = 2,
        text_mask_padding: bool = True,
        text_upsampling: Literal["pad", "average"] = "pad",
        qk_norm: Optional[Literal["rms_norm"]] = None,
        dropout: float = 0.1,
        attention_mask_keys: bool = False,
        rotary_heads: Optional[int] = None,
        video_dim: int = 512,
        condition_dim: int = 512,
        num_fusion_heads: int = 4,
    ):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        if dim % num_fusion_heads:
            raise ValueError(f"num_fusion_heads ({num_fusion_heads}) must divide the width {dim}.")
        self.gradient_checkpointing = False
        self.time_embed, self.text_embed, self.input_embed, self.transformer_blocks = dit_trunk(**self.config)
        self.video_proj = nn.Linear(video_dim, dim)
        self.condition_proj = nn.Linear(condition_dim, dim)
        self.fusion_norm = nn.LayerNorm(dim)
        self.fusion = nn.MultiheadAttention(dim, num_fusion_heads, batch_first=True)
        self.control_embed = _zero_linear(dim, dim)
        self.controlnet_blocks = nn.ModuleList(_zero_linear(dim, dim) for _ in range(num_layers))

    @classmethod
    def from_transformer(
        cls,
        transformer: DiTTransformerModel,
        num_layers: int = 4,
        video_dim: int = 512,
        condition_dim: int = 512,
        num_fusion_heads: int = 4,
        load_weights_from_transformer: bool = True,
    ) -> "DeepDubberControlNetModel":
        """A ControlNet shaped like `transformer`, its embeddings and first `num_layers` blocks copied from it."""
        if not 0 < num_layers <= transformer.config.num_layers:
            raise ValueError(
                f"num_layers must be between 1 and the transformer's {transformer.config.num_layers} blocks, "
                f"got {num_layers}."
            )
        config = {k: v for k, v in transformer.config.items() if not k.startswith("_")}
        config.update(num_layers=num_layers, video_dim=video_dim, condition_dim=condition_dim,
                      num_fusion_heads=num_fusion_heads)  # fmt: skip
        controlnet = cls.from_config(config)
        if load_weights_from_transformer:
            for name in ("time_embed", "text_embed", "input_embed"):
                getattr(controlnet, name).load_state_dict(getattr(transformer, name).state_dict())
            for block, source in zip(controlnet.transformer_blocks, transformer.transformer_blocks):
                block.load_state_dict(source.state_dict())
        if (controlnet.device, controlnet.dtype) != (transformer.device, transformer.dtype):
            controlnet = controlnet.to(transformer.device, transformer.dtype)
        return controlnet

    def fuse_conditions(
        self,
        video_features: torch.Tensor,
        condition_embeds: Optional[torch.Tensor] = None,
        condition_mask: Optional[torch.Tensor] = None,
        drop_video=False,
        drop_conclusion=False,
    ) -> torch.Tensor:
        r"""
        Eq. 17's fusion: video features `(b, n, dv)` attend to conclusion tokens `(b, m, dc)` → `(b, n, d)`.

        A dropped video is a zero feature; a dropped (or absent) conclusion adds nothing to the video's projection.
        """
        b = video_features.shape[0]
        keep_video = _keep(drop_video, b, video_features)
        video = self.video_proj(video_features * keep_video[:, None, None])  # (b, n, d)
        if condition_embeds is None:
            return video
        keys = self.condition_proj(condition_embeds.to(video.dtype))  # (b, m, d)
        padding = None if condition_mask is None else ~condition_mask.bool()
        if padding is not None:  # a row with every token masked would give NaN: let it see its first token
            padding = padding.clone()
            padding[:, 0] = False
        attended, _ = self.fusion(self.fusion_norm(video), keys, keys, key_padding_mask=padding, need_weights=False)
        keep_conclusion = _keep(drop_conclusion, b, video_features)
        return video + attended * keep_conclusion[:, None, None]

    def forward(
        self,
        hidden_states: torch.Tensor,
        cond: torch.Tensor,
        timestep: torch.Tensor,
        video_features: torch.Tensor,
        condition_embeds: Optional[torch.Tensor] = None,
        condition_mask: Optional[torch.Tensor] = None,
        text_ids: Optional[torch.Tensor] = None,
        text_embeds: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        drop_audio_cond=False,
        drop_text=False,
        drop_video=False,
        drop_conclusion=False,
        text_durations: Optional[torch.Tensor] = None,
        conditioning_scale: float = 1.0,
        return_dict: bool = True,
    ):
        r"""
        Args:
            hidden_states, cond, timestep, text_ids, text_embeds, attention_mask, drop_audio_cond, drop_text,
            text_durations:
                As in [`DiTTransformerModel.forward`] (`text_embeds` from this model's own `embed_text`).
            video_features (`torch.Tensor` of shape `(batch_size, num_frames, video_dim)`):
                Video features at the mel frame rate.
            condition_embeds (`torch.Tensor` of shape `(batch_size, num_tokens, condition_dim)`, *optional*):
                The encoded conclusion.
            condition_mask (`torch.Tensor` of shape `(batch_size, num_tokens)`, *optional*):
                Valid conclusion tokens.
            drop_video, drop_conclusion (`bool` or `torch.BoolTensor` of shape `(batch_size,)`, *optional*):
                Replace the video or the conclusion by the null condition.
            conditioning_scale (`float`, *optional*, defaults to 1.0):
                Multiplies every residual.
        """
        b, n = hidden_states.shape[:2]
        if video_features.shape[:2] != (b, n):
            raise ValueError(
                f"video_features must have one row per mel frame, shape ({b}, {n}, dv); got "
                f"{tuple(video_features.shape)}: interpolate the video features to the mel frame rate first."
            )
        x, temb, rotary = self.embed_inputs(hidden_states, cond, timestep, text_ids, text_embeds, attention_mask,
                                            drop_audio_cond, drop_text, text_durations)  # fmt: skip
        control = self.fuse_conditions(video_features.to(x.dtype), condition_embeds, condition_mask, drop_video,
                                       drop_conclusion)  # fmt: skip
        x = x + self.control_embed(control)
        samples = []
        for block, projection in zip(self.transformer_blocks, self.controlnet_blocks):
            x = self.run_block(block, x, temb, attention_mask, rotary)
            samples.append(projection(x) * conditioning_scale)
        if not return_dict:
            return (tuple(samples),)
        return DeepDubberControlNetOutput(controlnet_block_samples=tuple(samples))

    embed_text = DiTTransformerModel.embed_text
    embed_inputs = DiTTransformerModel.embed_inputs
    run_block = DiTTransformerModel.run_block


def _keep(drop, batch_size: int, like: torch.Tensor) -> torch.Tensor:
    """1 for the samples whose condition is kept, 0 for the dropped ones, as `(b,)` in `like`'s dtype."""
    flags = _batch_flags(drop, batch_size, like.device)
    if flags is None:
        return torch.ones(batch_size, device=like.device, dtype=like.dtype)
    return (~flags).to(like.dtype)


__all__ = ["DeepDubberControlNetModel", "DeepDubberControlNetOutput"]
