"""The F5-TTS-class diffusion transformer that predicts the flow of a mel spectrogram.

Shape legend: ``b`` batch, ``n`` mel frames, ``nt`` text tokens, ``c`` mel channels (100), ``d`` width.

Time follows F5-TTS: ``t = 0`` is pure noise, ``t = 1`` is data, and the model predicts the velocity
``x1 - x0`` (see :class:`~deepdubber_hf.schedulers.FlowMatchSwayScheduler` for the sampling side).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .attention import AdaLayerNormContinuous, DiTBlock, rotary_frequencies
from .embeddings import InputEmbedding, TextEmbedding, TimestepEmbedding


@dataclass
class DiTTransformerOutput(BaseOutput):
    """
    Args:
        sample (`torch.Tensor` of shape `(batch_size, num_frames, in_channels)`):
            The predicted flow (velocity) of the mel spectrogram.
    """

    sample: torch.Tensor


def _batch_flags(flag, batch_size: int, device) -> Optional[torch.Tensor]:
    """A Python bool or a (b,) bool tensor → (b,) bool tensor, or None when nothing is dropped."""
    if flag is None or flag is False:
        return None
    if flag is True:
        return torch.ones(batch_size, dtype=torch.bool, device=device)
    flag = torch.as_tensor(flag, device=device).bool()
    if flag.shape != (batch_size,):
        raise ValueError(f"a drop flag must be a bool or a tensor of shape ({batch_size},), got {tuple(flag.shape)}.")
    return flag if flag.any() else None


def dit_trunk(
    in_channels: int, num_layers: int, num_attention_heads: int, attention_head_dim: int, mlp_ratio: float,
    vocab_size: int, text_embed_dim: int, num_text_conv_layers: int, text_conv_mult: int, text_mask_padding: bool,
    text_upsampling: str, qk_norm: Optional[str], dropout: float, attention_mask_keys: bool,
    rotary_heads: Optional[int], **_,
) -> tuple:
    """The time embedding, text embedding, input embedding and blocks of a DiT with this configuration (the
    transformer's and, with fewer blocks, its ControlNet's)."""
    if text_upsampling not in ("pad", "average"):
        raise ValueError(f"text_upsampling must be 'pad' or 'average', got {text_upsampling!r}.")
    if text_upsampling == "average" and not text_mask_padding:
        raise ValueError("text_upsampling='average' needs text_mask_padding=True (fillers must stay zero).")
    dim = num_attention_heads * attention_head_dim
    text_embed = TextEmbedding(vocab_size, text_embed_dim, num_conv_layers=num_text_conv_layers,
                               conv_mult=text_conv_mult, mask_padding=text_mask_padding, upsampling=text_upsampling)
    blocks = nn.ModuleList(
        DiTBlock(dim, num_attention_heads, attention_head_dim, mlp_ratio=mlp_ratio, dropout=dropout, qk_norm=qk_norm,
                 mask_keys=attention_mask_keys, rotary_heads=rotary_heads)
        for _ in range(num_layers)
    )  # fmt: skip
    return TimestepEmbedding(dim), text_embed, InputEmbedding(in_channels, text_embed_dim, dim), blocks


class DiTTransformerModel(ModelMixin, ConfigMixin):
    r"""
    The F5-TTS v1 diffusion transformer: ConvNeXt-V2 text embedding, convolutional position embedding,
    AdaLN-zero blocks with rotary self-attention. Given the noisy mel, the prompt mel (the reference voice,
    zero where speech is to be generated) and the text, it predicts the flow-matching velocity.

    Args:
        in_channels (`int`, *optional*, defaults to 100):
            Mel channels.
        num_layers (`int`, *optional*, defaults to 22):
            Number of DiT blocks.
        num_attention_heads (`int`, *optional*, defaults to 16):
            Attention heads per block.
        attention_head_dim (`int`, *optional*, defaults to 64):
            Width of each head; the model width is `num_attention_heads * attention_head_dim`.
        mlp_ratio (`float`, *optional*, defaults to 2.0):
            Feed-forward width as a multiple of the model width.
        vocab_size (`int`, *optional*, defaults to 256):
            Size of the tokenizer's vocabulary; the embedding has one more row for the filler token.
        text_embed_dim (`int`, *optional*, defaults to 512):
            Width of the text embedding.
        num_text_conv_layers (`int`, *optional*, defaults to 4):
            ConvNeXt-V2 blocks over the text embedding.
        text_conv_mult (`int`, *optional*, defaults to 2):
            Expansion of the ConvNeXt-V2 blocks.
        text_mask_padding (`bool`, *optional*, defaults to `True`):
            Keep filler tokens at zero through the ConvNeXt blocks (F5-TTS v1; the original F5-TTS Base did not).
        text_upsampling (`str`, *optional*, defaults to `"pad"`):
            How tokens meet mel frames: `"pad"` pads the tokens with fillers to the mel length (F5-TTS);
            `"average"` spreads each token over its own span of frames (ZipVoice).
        qk_norm (`str`, *optional*):
            `None` or `"rms_norm"` on queries and keys.
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout in attention and feed-forward layers (training only).
        attention_mask_keys (`bool`, *optional*, defaults to `False`):
            Also hide padded frames from the attention keys (F5-TTS v1 checkpoints were trained without).
        rotary_heads (`int`, *optional*):
            Apply rotary positions to the first `rotary_heads` heads only (the original F5-TTS Base used 1);
            `None` for all heads.

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf import DiTTransformerModel
    >>> model = DiTTransformerModel(num_layers=2, num_attention_heads=2, attention_head_dim=16,
    ...                             vocab_size=32, text_embed_dim=16, num_text_conv_layers=1)
    >>> mel = torch.randn(1, 50, 100)
    >>> out = model(mel, cond=torch.zeros_like(mel), timestep=torch.tensor([0.5]),
    ...             text_ids=torch.tensor([[3, 4, 5]])).sample
    >>> out.shape
    torch.Size([1, 50, 100])
    ```
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["DiTBlock"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 100,
        num_layers: int = 22,
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
    ):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        self.gradient_checkpointing = False
        self.time_embed, self.text_embed, self.input_embed, self.transformer_blocks = dit_trunk(**self.config)
        self.norm_out = AdaLayerNormContinuous(dim)
        self.proj_out = nn.Linear(dim, in_channels)
        self._zero_init()

    def _zero_init(self):
        # AdaLN-zero: every block starts as the identity and the output as zero (DiT, F5-TTS).
        for block in self.transformer_blocks:
            nn.init.zeros_(block.norm1.linear.weight)
            nn.init.zeros_(block.norm1.linear.bias)
        for layer in (self.norm_out.linear, self.proj_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def embed_text(
        self,
        text_ids: torch.Tensor,
        num_frames: int,
        attention_mask: Optional[torch.Tensor] = None,
        drop_text=False,
        text_durations: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        r"""
        Text features per mel frame, to compute once and pass to every sampling step as `text_embeds`.

        Args:
            text_ids (`torch.LongTensor` of shape `(batch_size, num_tokens)`):
                Token ids, padded with -1.
            num_frames (`int`):
                Mel length of the output.
            attention_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`, *optional*):
                Valid mel frames per sample.
            drop_text (`bool` or `torch.BoolTensor` of shape `(batch_size,)`, *optional*):
                Replace the tokens by fillers (the unconditional branch of classifier-free guidance).
            text_durations (`torch.LongTensor` of shape `(batch_size, num_tokens)`, *optional*):
                Frames per token for `text_upsampling="average"`; by default all tokens share the valid frames.

        Returns:
            `torch.Tensor` of shape `(batch_size, num_frames, text_embed_dim)`.
        """
        frame_lengths = attention_mask.sum(dim=1) if attention_mask is not None else None
        drop = _batch_flags(drop_text, text_ids.shape[0], text_ids.device)
        return self.text_embed(
            text_ids, num_frames, frame_lengths=frame_lengths, drop_text=drop, text_durations=text_durations
        )

    def embed_inputs(
        self, hidden_states, cond, timestep, text_ids=None, text_embeds=None, attention_mask=None,
        drop_audio_cond=False, drop_text=False, text_durations=None,
    ) -> tuple:
        """The first layers of the forward (shared with the ControlNet, whose copies they also are): the width-`d`
        input `(b, n, d)`, the time embedding `(b, d)` and the rotary angles."""
        b, n = hidden_states.shape[:2]
        if timestep.ndim == 0:
            timestep = timestep.repeat(b)
        temb = self.time_embed(timestep)  # (b, d)
        if text_embeds is None:
            if text_ids is None:
                raise ValueError(f"{type(self).__name__} needs `text_ids` or precomputed `text_embeds`.")
            text_embeds = self.embed_text(text_ids, n, attention_mask, drop_text, text_durations)  # (b, n, dt)
        drop_cond = _batch_flags(drop_audio_cond, b, hidden_states.device)
        if drop_cond is not None:
            cond = cond.masked_fill(drop_cond[:, None, None], 0.0)
        x = self.input_embed(hidden_states, cond, text_embeds, mask=attention_mask)  # (b, n, d)
        rotary = rotary_frequencies(n, self.config.attention_head_dim, device=x.device)  # 2 × (n, dh)
        return x, temb, rotary

    def run_block(self, block, x, temb, attention_mask, rotary) -> torch.Tensor:
        """One block, through gradient checkpointing when it is on and gradients are needed."""
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, x, temb, attention_mask, rotary)
        return block(x, temb, mask=attention_mask, rotary=rotary)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cond: torch.Tensor,
        timestep: torch.Tensor,
        text_ids: Optional[torch.Tensor] = None,
        text_embeds: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        drop_audio_cond=False,
        drop_text=False,
        text_durations: Optional[torch.Tensor] = None,
        block_controlnet_hidden_states: Optional[list] = None,
        return_dict: bool = True,
    ):
        r"""
        Args:
            hidden_states (`torch.Tensor` of shape `(batch_size, num_frames, in_channels)`):
                The noisy mel at time `timestep`.
            cond (`torch.Tensor` of shape `(batch_size, num_frames, in_channels)`):
                The prompt mel: the reference speech, zero over the frames to generate.
            timestep (`torch.Tensor` of shape `(batch_size,)` or a scalar tensor):
                Flow time in [0, 1], 0 being noise.
            text_ids (`torch.LongTensor` of shape `(batch_size, num_tokens)`, *optional*):
                Token ids padded with -1; give these or `text_embeds`.
            text_embeds (`torch.Tensor` of shape `(batch_size, num_frames, text_embed_dim)`, *optional*):
                Output of [`~DiTTransformerModel.embed_text`], reused across sampling steps.
            attention_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`, *optional*):
                Valid frames when a batch mixes lengths.
            drop_audio_cond (`bool` or `torch.BoolTensor` of shape `(batch_size,)`, *optional*):
                Zero the prompt mel (classifier-free guidance and its training dropout).
            drop_text (`bool` or `torch.BoolTensor` of shape `(batch_size,)`, *optional*):
                Replace the text by fillers; ignored when `text_embeds` is given.
            text_durations (`torch.LongTensor`, *optional*):
                See [`~DiTTransformerModel.embed_text`].
            block_controlnet_hidden_states (`list` of `torch.Tensor`, *optional*):
                Residuals added to the output of the blocks, one per ControlNet block, spread evenly.
            return_dict (`bool`, *optional*, defaults to `True`):
                Return a [`DiTTransformerOutput`] instead of a tuple.
        """
        x, temb, rotary = self.embed_inputs(hidden_states, cond, timestep, text_ids, text_embeds, attention_mask,
                                            drop_audio_cond, drop_text, text_durations)  # fmt: skip

        interval = None
        if block_controlnet_hidden_states:
            interval = -(-len(self.transformer_blocks) // len(block_controlnet_hidden_states))
        for index, block in enumerate(self.transformer_blocks):
            x = self.run_block(block, x, temb, attention_mask, rotary)
            if interval is not None:
                x = x + block_controlnet_hidden_states[index // interval]

        output = self.proj_out(self.norm_out(x, temb))  # (b, n, c)
        if not return_dict:
            return (output,)
        return DiTTransformerOutput(sample=output)


__all__ = ["DiTTransformerModel", "DiTTransformerOutput"]
