"""Multi-condition classifier-free guidance (eq. 20 of the paper), four branches in one batched forward.

The branches, in batch order (each a copy of the `b` samples):

0. every condition: video `V`, conclusion `C`, script `T` (and the reference voice);
1. no video;
2. no video, no conclusion;
3. nothing: no video, no conclusion, no script, no reference voice (F5-TTS's unconditional branch).

and the guided velocity is

    v = v₃ + λ_V (v₀ − v₁) + λ_C (v₁ − v₂) + λ_T (v₂ − v₃)

so with every scale at 1 it is the fully conditioned velocity `v₀`.
"""

from __future__ import annotations

import torch

NUM_BRANCHES = 4
# Per branch: (drop video, drop conclusion, drop script and reference voice).
_DROPS = ((False, False, False), (True, False, False), (True, True, False), (True, True, True))


def branch_drop_flags(batch_size: int, device=None) -> dict:
    """The `(4b,)` drop flags of the four stacked branches: `drop_video`, `drop_conclusion`, `drop_text` and
    `drop_audio_cond` (the reference voice goes with the script, as in F5-TTS)."""
    flags = torch.tensor(_DROPS, dtype=torch.bool, device=device).repeat_interleave(batch_size, dim=0)  # (4b, 3)
    return {"drop_video": flags[:, 0], "drop_conclusion": flags[:, 1], "drop_text": flags[:, 2],
            "drop_audio_cond": flags[:, 2]}  # fmt: skip


def stack_branches(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """`(b, ...)` → `(4b, ...)`: the samples repeated once per branch."""
    return None if tensor is None else tensor.repeat(NUM_BRANCHES, *([1] * (tensor.ndim - 1)))


def combine_branches(
    velocity: torch.Tensor, video_guidance_scale: float, conclusion_guidance_scale: float, text_guidance_scale: float
) -> torch.Tensor:
    """The `(4b, ...)` velocities of the stacked branches → the guided `(b, ...)` velocity of eq. 20."""
    full, no_video, text_only, none = velocity.chunk(NUM_BRANCHES, dim=0)
    return (
        none
        + video_guidance_scale * (full - no_video)
        + conclusion_guidance_scale * (no_video - text_only)
        + text_guidance_scale * (text_only - none)
    )


__all__ = ["NUM_BRANCHES", "branch_drop_flags", "combine_branches", "stack_branches"]
