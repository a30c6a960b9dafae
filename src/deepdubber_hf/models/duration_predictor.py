"""The duration predictor of stage 2.2 (§3.3.2, eq. 18–19): when the speech starts and ends in the clip.

Shape legend: ``b`` batch, ``f`` video frames (features at the video encoder's rate, 10 per second by default),
``m`` conclusion tokens, ``nt`` script tokens, ``d`` width.

Eq. 18 predicts the speech duration from the video features `V_l` and the conditions. For dubbing the place of
the speech in the clip matters as much as its length (the mouths must move with it), so this model predicts both
ends: for every video frame a score of "the speech starts here" and one of "it ends here"; the onset and the
offset are the expectations of the frame times under the two softmaxes (differentiable), and the duration is
their difference. `L_dur` is the L1 distance in seconds between predicted and true onset and offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .embeddings import sinusoidal_positions


@dataclass
class DurationPredictorOutput(BaseOutput):
    """
    Args:
        onset_s, offset_s, duration_s (`torch.Tensor` of shape `(batch_size,)`):
            Predicted start, end and length of the speech, in seconds from the start of the clip.
        start_logits, end_logits (`torch.Tensor` of shape `(batch_size, num_video_frames)`):
            Per video frame scores of the speech starting / ending there (masked frames at -inf).
        loss (`torch.Tensor`, *optional*):
            `L_dur` (eq. 19) when targets were given.
    """

    onset_s: torch.Tensor
    offset_s: torch.Tensor
    duration_s: torch.Tensor
    start_logits: torch.Tensor
    end_logits: torch.Tensor
    loss: Optional[torch.Tensor] = None


class DurationPredictorModel(ModelMixin, ConfigMixin):
    r"""
    A small transformer encoder over the video features, the encoded conclusion and the script, with two per-frame
    heads (speech start, speech end).

    Args:
        video_dim (`int`, *optional*, defaults to 512):
            Width of the video features.
        condition_dim (`int`, *optional*, defaults to 512):
            Width of the conclusion embeddings.
        vocab_size (`int`, *optional*, defaults to 256):
            Script tokenizer's vocabulary (the DiT's); ids padded with -1.
        hidden_size (`int`, *optional*, defaults to 256):
            Width of the encoder.
        num_layers (`int`, *optional*, defaults to 4):
            Encoder layers.
        num_attention_heads (`int`, *optional*, defaults to 4):
            Attention heads per layer.
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout in the encoder (training only).
        video_fps (`float`, *optional*, defaults to 10.0):
            Rate of the video features: frame `i` is at `i / video_fps` seconds.

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf import DurationPredictorModel
    >>> model = DurationPredictorModel(video_dim=8, condition_dim=12, vocab_size=32, hidden_size=16, num_layers=1)
    >>> out = model(video_features=torch.randn(1, 30, 8), text_ids=torch.tensor([[3, 4, 5]]),
    ...             condition_embeds=torch.randn(1, 6, 12))
    >>> bool(0 <= out.onset_s <= out.offset_s <= 2.9)
    True
    ```
    """

    @register_to_config
    def __init__(
        self,
        video_dim: int = 512,
        condition_dim: int = 512,
        vocab_size: int = 256,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_attention_heads: int = 4,
        dropout: float = 0.1,
        video_fps: float = 10.0,
    ):
        super().__init__()
        self.video_proj = nn.Linear(video_dim, hidden_size)
        self.condition_proj = nn.Linear(condition_dim, hidden_size)
        self.token_embedding = nn.Embedding(vocab_size + 1, hidden_size)  # 0: padding (ids shifted by one)
        self.type_embedding = nn.Embedding(3, hidden_size)  # video, conclusion, script
        layer = nn.TransformerEncoderLayer(hidden_size, num_attention_heads, 4 * hidden_size, dropout,
                                           activation="gelu", batch_first=True, norm_first=True)  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)
        self.boundary_head = nn.Linear(hidden_size, 2)  # (start, end) score per video frame

    def forward(
        self,
        video_features: torch.Tensor,
        text_ids: torch.Tensor,
        video_mask: Optional[torch.Tensor] = None,
        condition_embeds: Optional[torch.Tensor] = None,
        condition_mask: Optional[torch.Tensor] = None,
        onset_s: Optional[torch.Tensor] = None,
        offset_s: Optional[torch.Tensor] = None,
        return_dict: bool = True,
    ):
        r"""
        Args:
            video_features (`torch.Tensor` of shape `(batch_size, num_video_frames, video_dim)`):
                Video features at `config.video_fps`; a dropped video is all zeros.
            text_ids (`torch.LongTensor` of shape `(batch_size, num_tokens)`):
                The script's ids, padded with -1.
            video_mask (`torch.BoolTensor` of shape `(batch_size, num_video_frames)`, *optional*):
                Valid video frames when a batch mixes clip lengths.
            condition_embeds (`torch.Tensor` of shape `(batch_size, num_condition_tokens, condition_dim)`, *optional*):
                The encoded conclusion; `condition_mask` marks its valid tokens.
            onset_s, offset_s (`torch.Tensor` of shape `(batch_size,)`, *optional*):
                True speech start and end in seconds: with them the output carries `L_dur`.
        """
        b, f = video_features.shape[:2]
        device = video_features.device
        if video_mask is None:
            video_mask = torch.ones(b, f, dtype=torch.bool, device=device)
        video_mask = video_mask.bool()
        if not video_mask.any(dim=1).all():
            raise ValueError("every clip needs at least one valid video frame (video_mask is all False for one).")
        width = self.config.hidden_size
        video = self.video_proj(video_features) + sinusoidal_positions(f, width, device=device).to(video_features.dtype)
        parts, masks = [video + self.type_embedding.weight[0]], [video_mask]
        if condition_embeds is not None:
            parts.append(self.condition_proj(condition_embeds.to(video.dtype)) + self.type_embedding.weight[1])
            masks.append(torch.ones(condition_embeds.shape[:2], dtype=torch.bool, device=device)
                         if condition_mask is None else condition_mask.bool())  # fmt: skip
        text_ids = text_ids.long()
        tokens = self.token_embedding((text_ids + 1).clamp(min=0))
        tokens = tokens + sinusoidal_positions(text_ids.shape[1], width, device=device).to(tokens.dtype)
        parts.append(tokens + self.type_embedding.weight[2])
        masks.append(text_ids >= 0)

        hidden = self.encoder(torch.cat(parts, dim=1), src_key_padding_mask=~torch.cat(masks, dim=1))
        scores = self.boundary_head(self.norm(hidden[:, :f]))  # (b, f, 2)
        scores = scores.masked_fill(~video_mask[..., None], float("-inf"))
        start_logits, end_logits = scores[..., 0], scores[..., 1]
        times = torch.arange(f, device=device, dtype=scores.dtype) / self.config.video_fps  # (f,)
        onset = (start_logits.softmax(-1) * times).sum(-1)
        offset = (end_logits.softmax(-1) * times).sum(-1)
        offset = torch.maximum(offset, onset)

        loss = None
        if (onset_s is None) != (offset_s is None):
            raise ValueError("give both onset_s and offset_s (or neither).")
        if onset_s is not None:
            loss = (onset - onset_s.to(onset)).abs().mean() + (offset - offset_s.to(offset)).abs().mean()
        output = DurationPredictorOutput(onset_s=onset, offset_s=offset, duration_s=offset - onset,
                                         start_logits=start_logits, end_logits=end_logits, loss=loss)  # fmt: skip
        return output if return_dict else output.to_tuple()


__all__ = ["DurationPredictorModel", "DurationPredictorOutput"]
