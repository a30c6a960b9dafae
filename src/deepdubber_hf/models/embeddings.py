"""Embeddings of the F5-TTS-class DiT: time, text (ConvNeXt-V2) and the mel/condition/text input mix.

Shape legend: ``b`` batch, ``n`` mel frames, ``nt`` text tokens, ``c`` mel channels, ``d`` width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..alignment import weighted_durations


def sinusoidal_positions(num_positions: int, dim: int, theta: float = 10000.0, device=None) -> torch.Tensor:
    """Cos/sin position table of shape ``(num_positions, dim)``: the first half cosines, the second sines.

    This is the table F5-TTS adds to the text embedding before its ConvNeXt blocks.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, device=device)[: dim // 2].float() / dim))
    t = torch.arange(num_positions, device=device)
    freqs = torch.outer(t, freqs).float()
    return torch.cat([torch.cos(freqs), torch.sin(freqs)], dim=-1)


def average_text_durations(num_tokens: int, num_frames: int) -> torch.Tensor:
    """Spread ``num_tokens`` evenly over ``num_frames`` mel frames (ZipVoice-style average upsampling).

    Every token gets ``num_frames // num_tokens`` frames; the last ``num_frames % num_tokens`` tokens get one
    more (the rule of F5-TTS's ``average_upsample_text_by_mask``): :func:`~deepdubber_hf.alignment.weighted_durations`
    with equal weights. Returns a long tensor of shape ``(num_tokens,)``.
    """
    return weighted_durations(torch.ones(max(num_tokens, 0)), num_frames)


class TimestepEmbedding(nn.Module):
    """Flow time ``t`` in [0, 1] → sinusoidal features (scaled by 1000) → 2-layer MLP."""

    def __init__(self, dim: int, frequency_dim: int = 256, scale: float = 1000.0):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.scale = scale
        self.linear_1 = nn.Linear(frequency_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        half = self.frequency_dim // 2
        exponent = math.log(10000) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=timestep.device).float() * -exponent)
        args = self.scale * timestep.unsqueeze(1) * freqs.unsqueeze(0)  # (b, half)
        emb = torch.cat((args.sin(), args.cos()), dim=-1).to(timestep.dtype)  # (b, frequency_dim)
        return self.linear_2(self.act(self.linear_1(emb)))  # (b, d)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2's GRN over the time axis."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """Depthwise conv (kernel 7) → LayerNorm → pointwise MLP with GRN, residual."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int = 7):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.grn = GlobalResponseNorm(intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.dwconv(x.transpose(1, 2)).transpose(1, 2)  # (b, nt, d)
        x = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(x)))))
        return residual + x


class TextEmbedding(nn.Module):
    """Character/phoneme ids → per-mel-frame text features.

    Ids are shifted by one so that 0 is the filler token (batch padding ``-1`` becomes filler too). With
    ``upsampling="pad"`` the token sequence is padded with fillers to the mel length (F5-TTS); with
    ``"average"`` each token is repeated over its own span of frames after the ConvNeXt blocks (ZipVoice).
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        num_conv_layers: int = 4,
        conv_mult: int = 2,
        mask_padding: bool = True,
        upsampling: str = "pad",
    ):
        super().__init__()
        self.dim = dim
        self.mask_padding = mask_padding
        self.upsampling = upsampling
        self.token_embedding = nn.Embedding(vocab_size + 1, dim)
        self.conv_blocks = nn.ModuleList([ConvNeXtV2Block(dim, dim * conv_mult) for _ in range(num_conv_layers)])

    def _upsample(self, text: torch.Tensor, valid: torch.Tensor, num_frames: torch.Tensor, durations) -> torch.Tensor:
        out = torch.zeros_like(text)
        for i in range(text.shape[0]):
            rows = text[i, valid[i]]  # (nt_i, d)
            if rows.shape[0] == 0 or int(num_frames[i]) <= 0:
                continue
            if durations is None:
                dur = average_text_durations(rows.shape[0], int(num_frames[i])).to(text.device)
            else:
                dur = durations[i, valid[i]].to(device=text.device, dtype=torch.long)
            index = torch.repeat_interleave(torch.arange(rows.shape[0], device=text.device), dur)
            index = index[: text.shape[1]]
            out[i, : index.shape[0]] = rows[index]
        return out

    def forward(
        self,
        text_ids: torch.Tensor,
        num_frames: int,
        frame_lengths: torch.Tensor | None = None,
        drop_text: torch.Tensor | None = None,
        text_durations: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            text_ids: (b, nt) long, batch padding ``-1``.
            num_frames: the mel length ``n`` of the output.
            frame_lengths: (b,) valid mel frames per sample, or ``None`` when all ``n`` are valid.
            drop_text: (b,) bool, samples whose tokens are replaced by fillers (classifier-free guidance).
            text_durations: (b, nt) frames per token, only for ``"average"`` upsampling.
        Returns:
            (b, n, d)
        """
        ids = text_ids + 1  # (b, nt), 0 = filler
        ids = ids[:, :num_frames]  # more tokens than frames: cut, as F5-TTS does
        ids = F.pad(ids, (0, num_frames - ids.shape[1]), value=0)  # (b, n)
        valid_pos = None
        if frame_lengths is not None:
            valid_pos = torch.arange(num_frames, device=ids.device)[None] < frame_lengths[:, None]  # (b, n)
            ids = ids.masked_fill(~valid_pos, 0)
        filler = ids == 0  # (b, n); taken before dropping, as F5-TTS does
        if drop_text is not None:
            ids = ids.masked_fill(drop_text[:, None], 0)

        text = self.token_embedding(ids)  # (b, n, d)
        if valid_pos is not None:
            text = text.masked_fill(~valid_pos[..., None], 0.0)
        if len(self.conv_blocks) > 0:
            positions = sinusoidal_positions(num_frames, self.dim, device=text.device)  # (n, d)
            if valid_pos is not None:
                positions = positions[None] * valid_pos[..., None].to(positions.dtype)
            text = text + positions
            if self.mask_padding:
                text = text.masked_fill(filler[..., None], 0.0)
                for block in self.conv_blocks:
                    text = block(text).masked_fill(filler[..., None], 0.0)
            else:
                for block in self.conv_blocks:
                    text = block(text)

        if self.upsampling == "average":
            if text_durations is not None:  # aligned with the ids: cut and pad the same way
                text_durations = text_durations[:, :num_frames]
                text_durations = F.pad(text_durations, (0, num_frames - text_durations.shape[1]), value=0)
            if frame_lengths is None:
                frame_lengths = torch.full((text.shape[0],), num_frames, device=text.device, dtype=torch.long)
            text = self._upsample(text, ~filler, frame_lengths, text_durations)
        return text


class ConvPositionEmbedding(nn.Module):
    """Two grouped 1-D convolutions with Mish, masked at padded frames."""

    def __init__(self, dim: int, kernel_size: int = 31, groups: int = 16):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x.transpose(1, 2)  # (b, d, n)
        mask = mask[:, None] if mask is not None else None  # (b, 1, n)
        for conv in (self.conv1, self.conv2):
            if mask is not None:
                x = x.masked_fill(~mask, 0.0)
            x = self.act(conv(x))
        if mask is not None:
            x = x.masked_fill(~mask, 0.0)
        # Back to (b, n, d) in memory too: a transposed view here would give the whole residual stream a strided
        # layout, and every later add and matmul would pay for it.
        return x.transpose(1, 2).contiguous()  # (b, n, d)


class InputEmbedding(nn.Module):
    """Concatenate noisy mel, prompt mel and text features, project to the model width, add conv positions."""

    def __init__(self, mel_dim: int, text_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(mel_dim * 2 + text_dim, out_dim)
        self.conv_pos_embed = ConvPositionEmbedding(out_dim)

    def forward(self, x, cond, text_embeds, mask=None) -> torch.Tensor:
        x = self.proj(torch.cat((x, cond, text_embeds), dim=-1))  # (b, n, d)
        return self.conv_pos_embed(x, mask=mask) + x


__all__ = [
    "ConvNeXtV2Block",
    "ConvPositionEmbedding",
    "InputEmbedding",
    "TextEmbedding",
    "TimestepEmbedding",
    "average_text_durations",
    "sinusoidal_positions",
]
