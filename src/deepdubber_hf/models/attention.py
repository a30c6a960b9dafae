"""Attention blocks of the F5-TTS-class DiT: rotary self-attention and AdaLN-zero modulation.

Shape legend: ``b`` batch, ``n`` mel frames, ``h`` heads, ``d`` width, ``dh`` head width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rotary_frequencies(
    seq_len: int, head_dim: int, theta: float = 10000.0, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of the interleaved rotary angles, each ``(n, dh)``: every frequency repeated for its
    (even, odd) pair. Computed once per forward and shared by all blocks."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    freqs = torch.outer(torch.arange(seq_len, device=device).float(), inv_freq)  # (n, dh/2)
    freqs = torch.stack((freqs, freqs), dim=-1).flatten(-2)  # (n, dh)
    return freqs.cos(), freqs.sin()


def apply_rotary(x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate (even, odd) pairs of ``x`` (b, h, n, dh) by the angles whose ``(cos, sin)`` are given."""
    cos, sin = rotary
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (x * cos + rotated * sin).to(x.dtype)


class AdaLayerNormZero(nn.Module):
    """LayerNorm modulated by the time embedding; returns the attention input and the five other modulations."""

    def __init__(self, dim: int):
        super().__init__()
        self.act = nn.SiLU()
        self.linear = nn.Linear(dim, dim * 6)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor, emb: torch.Tensor):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.linear(self.act(emb)).chunk(6, dim=1)
        x = self.norm(x) * (1 + scale_msa[:, None]) + shift_msa[:, None]
        return x, gate_msa, shift_mlp, scale_mlp, gate_mlp


class AdaLayerNormContinuous(nn.Module):
    """Final LayerNorm with scale and shift from the time embedding."""

    def __init__(self, dim: int):
        super().__init__()
        self.act = nn.SiLU()
        self.linear = nn.Linear(dim, dim * 2)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(self.act(emb)).chunk(2, dim=1)
        return self.norm(x) * (1 + scale)[:, None, :] + shift[:, None, :]


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: float = 4.0, dropout: float = 0.0):
        super().__init__()
        inner_dim = int(dim * mult)
        self.proj_in = nn.Linear(dim, inner_dim)
        self.act = nn.GELU(approximate="tanh")
        self.dropout = nn.Dropout(dropout)
        self.proj_out = nn.Linear(inner_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.dropout(self.act(self.proj_in(x))))


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions and optional RMS query/key norm."""

    def __init__(
        self, dim: int, heads: int, head_dim: int, dropout: float = 0.0, qk_norm: str | None = None,
        mask_keys: bool = False, rotary_heads: int | None = None,
    ):
        super().__init__()
        self.heads = heads
        self.rotary_heads = rotary_heads
        self.head_dim = head_dim
        self.mask_keys = mask_keys
        inner_dim = heads * head_dim
        self.to_q = nn.Linear(dim, inner_dim)
        self.to_k = nn.Linear(dim, inner_dim)
        self.to_v = nn.Linear(dim, inner_dim)
        if qk_norm is None:
            self.norm_q = self.norm_k = None
        elif qk_norm == "rms_norm":
            self.norm_q = nn.RMSNorm(head_dim, eps=1e-6)
            self.norm_k = nn.RMSNorm(head_dim, eps=1e-6)
        else:
            raise ValueError(f"qk_norm must be None or 'rms_norm', got {qk_norm!r}.")
        self.to_out = nn.Linear(inner_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, rotary: tuple | None = None):
        b = x.shape[0]
        q = self.to_q(x).view(b, -1, self.heads, self.head_dim).transpose(1, 2)  # (b, h, n, dh)
        k = self.to_k(x).view(b, -1, self.heads, self.head_dim).transpose(1, 2)
        v = self.to_v(x).view(b, -1, self.heads, self.head_dim).transpose(1, 2)
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        if rotary is not None and self.rotary_heads is not None:  # original F5-TTS: rotary on the first heads only
            pn = self.rotary_heads
            q = torch.cat((apply_rotary(q[:, :pn], rotary), q[:, pn:]), dim=1)
            k = torch.cat((apply_rotary(k[:, :pn], rotary), k[:, pn:]), dim=1)
        elif rotary is not None:
            q, k = apply_rotary(q, rotary), apply_rotary(k, rotary)
        attn_mask = mask[:, None, None, :] if (self.mask_keys and mask is not None) else None  # (b, 1, 1, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (b, h, n, dh)
        out = self.dropout(self.to_out(out.transpose(1, 2).reshape(b, -1, self.heads * self.head_dim)))
        if mask is not None:
            out = out.masked_fill(~mask[..., None], 0.0)
        return out  # (b, n, d)


class DiTBlock(nn.Module):
    """AdaLN-zero transformer block: modulated self-attention and feed-forward, each gated."""

    def __init__(
        self, dim: int, heads: int, head_dim: int, mlp_ratio: float = 2.0, dropout: float = 0.1,
        qk_norm: str | None = None, mask_keys: bool = False, rotary_heads: int | None = None,
    ):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim)
        self.attn = Attention(
            dim, heads, head_dim, dropout=dropout, qk_norm=qk_norm, mask_keys=mask_keys, rotary_heads=rotary_heads
        )
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, mult=mlp_ratio, dropout=dropout)

    def forward(self, x, temb, mask=None, rotary=None):
        norm, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(x, temb)
        x = x + gate_msa[:, None] * self.attn(norm, mask=mask, rotary=rotary)
        norm = self.norm2(x) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        return x + gate_mlp[:, None] * self.ff(norm)


__all__ = [
    "AdaLayerNormContinuous",
    "AdaLayerNormZero",
    "Attention",
    "DiTBlock",
    "FeedForward",
    "apply_rotary",
    "rotary_frequencies",
]
