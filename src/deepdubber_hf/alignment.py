"""Token durations: how many mel frames each text token gets when the text is spread over the speech.

F5-TTS pads the text with fillers and lets attention find the alignment, which takes a large model many steps to
learn; ZipVoice spreads the tokens evenly over the frames ("average upsampling"). This module adds two steps on the
way to a FastSpeech-like alignment, without any extra model:

- :func:`align_utterances` finds each token's frames in recorded speech by forced alignment: a left-to-right
  hidden Markov model with one diagonal Gaussian state per token type over cepstral features, trained from a flat
  (even) start by Viterbi re-estimation, the way HTK bootstraps monophone models. Silence at either end gets a state
  of its own, and its frames are given to the first and last token.
- :func:`weighted_durations` spreads a number of frames over tokens in proportion to per-token weights (the mean
  aligned duration of each token type, stored in the tokenizer), which is what generation uses for new text.

Shape legend: ``t`` mel frames, ``s`` tokens, ``f`` features, ``v`` token types.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

NUM_CEPSTRA = 20
VARIANCE_FLOOR = 1e-2


def weighted_durations(weights: Sequence[float] | torch.Tensor, num_frames: int) -> torch.Tensor:
    """Split `num_frames` frames over tokens in proportion to `weights` (largest remainders get the leftovers).

    Args:
        weights (`Sequence[float]` or `torch.Tensor` of shape `(s,)`):
            Non-negative weight of each token; if they are all zero, every token weighs the same.
        num_frames (`int`):
            Frames to split.

    Returns:
        `torch.LongTensor` of shape `(s,)` summing to `num_frames` (or empty when there are no tokens).
    """
    weights = torch.as_tensor(weights, dtype=torch.float64).clamp(min=0)
    if weights.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    num_frames = max(int(num_frames), 0)
    if float(weights.sum()) <= 0:
        weights = torch.ones_like(weights)
    exact = weights / weights.sum() * num_frames
    durations = exact.floor().long()
    leftover = num_frames - int(durations.sum())
    if leftover > 0:
        # The largest remainders get one frame more; ties go to the later token, as F5-TTS's even split gives the
        # last tokens the extra frames (a stable sort of the reversed remainders).
        reversed_order = torch.argsort((exact - durations).flip(0), descending=True, stable=True)
        durations[len(exact) - 1 - reversed_order[:leftover]] += 1
    return durations


def cepstral_features(log_mel: torch.Tensor, num_cepstra: int = NUM_CEPSTRA) -> np.ndarray:
    """Cepstra (DCT-II of the log-mel) and their first differences, normalised per utterance.

    Args:
        log_mel (`torch.Tensor` of shape `(t, n_mels)`):
            One utterance's log-mel spectrogram.

    Returns:
        `np.ndarray` of shape `(t, 2 * num_cepstra)`, float32, zero mean and unit variance per dimension.
    """
    mel = log_mel.detach().double().cpu().numpy()  # (t, m)
    m = mel.shape[1]
    k = np.arange(num_cepstra)[:, None]
    basis = np.cos(np.pi / m * (np.arange(m)[None] + 0.5) * k)  # (c, m)
    cepstra = mel @ basis.T  # (t, c)
    deltas = np.gradient(cepstra, axis=0) if len(cepstra) > 1 else np.zeros_like(cepstra)
    features = np.concatenate([cepstra, deltas], axis=1)
    features = (features - features.mean(0)) / (features.std(0) + 1e-5)
    return features.astype(np.float32)


def _viterbi(log_likelihoods: list[np.ndarray], skippable: list[np.ndarray]) -> list[np.ndarray]:
    """Best left-to-right path of each utterance through its states 0..s-1, from the first to the last: each frame
    stays, advances one state, or advances two when the state in between is skippable (it then gets no frame).
    The utterances are decoded together, padded to the longest.

    Args:
        log_likelihoods: per utterance, (t, s) emission log-likelihoods with t >= s.
        skippable: per utterance, (s,) bool, states that may get no frame (never the first or the last).

    Returns:
        Per utterance, (s,) frames per state.
    """
    b = len(log_likelihoods)
    t_max = max(ll.shape[0] for ll in log_likelihoods)
    s_max = max(ll.shape[1] for ll in log_likelihoods)
    emissions = np.full((t_max, b, s_max), -np.inf)
    jump_allowed = np.zeros((b, s_max), dtype=bool)  # into state j from j-2 over j-1
    for i, (ll, skip) in enumerate(zip(log_likelihoods, skippable)):
        emissions[: ll.shape[0], i, : ll.shape[1]] = ll
        jump_allowed[i, 2 : ll.shape[1]] = skip[1:-1]
    score = np.full((b, s_max), -np.inf)
    score[:, 0] = emissions[0, :, 0]
    step = np.zeros((t_max, b, s_max), dtype=np.int8)  # 0 stay, 1 from the previous state, 2 from the one before
    candidates = np.full((3, b, s_max), -np.inf)
    for frame in range(1, t_max):
        candidates[0] = score
        candidates[1, :, 1:] = score[:, :-1]
        candidates[2, :, 2:] = np.where(jump_allowed[:, 2:], score[:, :-2], -np.inf)
        step[frame] = candidates.argmax(0)
        score = candidates.max(0) + emissions[frame]
    paths = []
    for i, ll in enumerate(log_likelihoods):
        t, s = ll.shape
        durations = np.zeros(s, dtype=np.int64)
        state = s - 1
        for frame in range(t - 1, -1, -1):
            durations[state] += 1
            state -= int(step[frame, i, state])
        paths.append(durations)
    return paths


def _log_likelihoods(features: np.ndarray, states: np.ndarray, means: np.ndarray, variances: np.ndarray):
    """(t, s) diagonal-Gaussian log-likelihood of every frame under every state's token type."""
    mu, var = means[states], variances[states]  # (s, f)
    inverse = 1.0 / var
    # sum_f (x - mu)^2 / var, expanded so that no (t, s, f) array is made
    distance = (features**2) @ inverse.T - 2 * features @ (mu * inverse).T + (mu**2 * inverse).sum(1)[None]
    return -0.5 * (distance + np.log(var).sum(1)[None])


def _states(features, token_ids, vocab_size: int, mark_ids) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each utterance's HMM states (silence, its tokens but the marks, silence) and which tokens are sounded."""
    if len(features) != len(token_ids):
        raise ValueError(f"got {len(features)} feature arrays for {len(token_ids)} token sequences.")
    silence = vocab_size  # the extra state type at both ends
    is_mark = np.zeros(vocab_size, dtype=bool)
    is_mark[list(mark_ids)] = True
    sequences, sounded = [], []
    for index, (frames, ids) in enumerate(zip(features, token_ids)):
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0 or ids.min() < 0 or ids.max() >= vocab_size or is_mark[ids].all():
            raise ValueError(
                f"utterance {index}: token ids must be a non-empty sequence in [0, {vocab_size}) with at least one "
                f"token that is not a mark, got {ids.tolist()}."
            )
        sounded.append(~is_mark[ids])
        ids = ids[sounded[-1]]
        if len(frames) < ids.size + 2:
            raise ValueError(
                f"utterance {index} has {len(frames)} frames for {ids.size} tokens: every token needs at least one "
                "frame; leave out clips too short for their text (e.g. with a higher --min_duration_s)."
            )
        sequences.append(np.concatenate(([silence], ids, [silence])))
    return sequences, sounded


def _estimate(features, sequences, durations, num_states: int) -> tuple[np.ndarray, np.ndarray]:
    """Each state type's diagonal Gaussian from the frames assigned to it (types never seen: N(0, 1))."""
    dim = features[0].shape[1]
    sums, squares, counts = np.zeros((num_states, dim)), np.zeros((num_states, dim)), np.zeros(num_states)
    for frames, states, frame_counts in zip(features, sequences, durations):
        labels = np.repeat(states, frame_counts)
        np.add.at(sums, labels, frames)
        np.add.at(squares, labels, frames.astype(np.float64) ** 2)
        np.add.at(counts, labels, 1)
    seen = counts > 0
    means, variances = np.zeros_like(sums), np.ones_like(sums)
    means[seen] = sums[seen] / counts[seen, None]
    variances[seen] = np.maximum(squares[seen] / counts[seen, None] - means[seen] ** 2, VARIANCE_FLOOR)
    return means, variances


def _decode(features, sequences, may_skip, means, variances, batch_size: int, progress: str | None):
    """Viterbi durations per state of every utterance, in batches of similar length."""
    durations = [None] * len(sequences)
    order = sorted(range(len(features)), key=lambda i: len(features[i]))
    for start in tqdm(range(0, len(order), batch_size), disable=progress is None, desc=progress):
        batch = order[start : start + batch_size]
        paths = _viterbi([_log_likelihoods(features[i], sequences[i], means, variances) for i in batch],
                         [may_skip[sequences[i]] for i in batch])  # fmt: skip
        for i, path in zip(batch, paths):
            durations[i] = path
    return durations


def _token_durations(state_durations, sounded) -> list[np.ndarray]:
    """Frames per token: 0 for the marks, the silences counted in the first and last token."""
    result = []
    for frame_counts, keep in zip(state_durations, sounded):
        tokens = np.zeros(keep.size, dtype=np.int64)
        tokens[keep] = frame_counts[1:-1]
        tokens[0] += frame_counts[0]
        tokens[-1] += frame_counts[-1]
        result.append(tokens)
    return result


def align_utterances(
    features: Sequence[np.ndarray],
    token_ids: Sequence[Sequence[int]],
    vocab_size: int,
    skippable_ids: Sequence[int] = (),
    mark_ids: Sequence[int] = (),
    num_iterations: int = 6,
    batch_size: int = 64,
    show_progress: bool = True,
) -> tuple[list[np.ndarray], dict]:
    """Forced alignment of many utterances at once (flat start, then Viterbi re-estimation).

    Args:
        features (`Sequence[np.ndarray]`):
            Per utterance, `(t, f)` frame features (:func:`cepstral_features`).
        token_ids (`Sequence[Sequence[int]]`):
            Per utterance, its token ids in `[0, vocab_size)`.
        vocab_size (`int`):
            Number of token types.
        skippable_ids (`Sequence[int]`, *optional*):
            Token types that may take no frame: spaces and punctuation (see :func:`silent_token_ids`).
        mark_ids (`Sequence[int]`, *optional*):
            Token types that never take a frame (stress and length marks): they are left out of the alignment and
            get 0 frames.
        num_iterations (`int`, *optional*, defaults to 6):
            Re-estimation rounds after the flat start.
        batch_size (`int`, *optional*, defaults to 64):
            Utterances decoded together.
        show_progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar per round.

    Returns:
        `(durations, model)`: per utterance, `(s,)` frames per token summing to its `t` frames (the leading and
        trailing silence counted in the first and last token); and the HMM as a JSON-able dict, which
        :func:`align_with_model` uses to align more speech the same way (the tokenizer keeps it as `aligner`).

    Raises:
        `ValueError`: an utterance has no tokens, an id outside the vocabulary, or fewer frames than tokens + 2.
    """
    sequences, sounded = _states(features, token_ids, vocab_size, mark_ids)
    may_skip = np.zeros(vocab_size + 1, dtype=bool)
    may_skip[list(skippable_ids)] = True
    # Flat start: the silences get a tenth of the frames each, the tokens share the rest evenly.
    durations = []
    for frames, states in zip(features, sequences):
        edge = max(1, len(frames) // 10)
        inner = weighted_durations(np.ones(len(states) - 2), len(frames) - 2 * edge).clamp(min=1).numpy()
        inner[-1] += len(frames) - 2 * edge - inner.sum()
        durations.append(np.concatenate(([edge], inner, [edge])))
    for round_index in range(num_iterations):
        means, variances = _estimate(features, sequences, durations, vocab_size + 1)
        progress = f"Aligning text to speech ({round_index + 1}/{num_iterations})" if show_progress else None
        durations = _decode(features, sequences, may_skip, means, variances, batch_size, progress)
    means, variances = _estimate(features, sequences, durations, vocab_size + 1)
    model = {"means": np.round(means, 4).tolist(), "variances": np.round(variances, 4).tolist(),
             "skippable_ids": sorted(int(i) for i in skippable_ids),
             "mark_ids": sorted(int(i) for i in mark_ids)}  # fmt: skip
    return _token_durations(durations, sounded), model


def align_with_model(model: dict, features: Sequence[np.ndarray], token_ids: Sequence[Sequence[int]]):
    """Align more utterances with an HMM that :func:`align_utterances` trained (no re-estimation).

    Returns:
        `list[np.ndarray]`: per utterance, frames per token, as :func:`align_utterances` gives them.
    """
    means, variances = np.asarray(model["means"]), np.asarray(model["variances"])
    vocab_size = means.shape[0] - 1
    if any(f.shape[1] != means.shape[1] for f in features):
        raise ValueError(f"the aligner models {means.shape[1]} features per frame; cepstral_features gives them.")
    sequences, sounded = _states(features, token_ids, vocab_size, model["mark_ids"])
    may_skip = np.zeros(vocab_size + 1, dtype=bool)
    may_skip[list(model["skippable_ids"])] = True
    durations = _decode(features, sequences, may_skip, means, variances, batch_size=64, progress=None)
    return _token_durations(durations, sounded)


def silent_token_ids(tokens: Sequence[str]) -> tuple[list[int], list[int]]:
    """Token types that are not sounds of their own, by Unicode category.

    Returns:
        `(marks, pauses)`: the ids of modifier marks (IPA stress ˈ ˌ and length ː), which never get a frame, and
        of whitespace and punctuation, which may get none.
    """
    marks = [index for index, token in enumerate(tokens) if token and unicodedata.category(token[0]) in ("Lm", "Sk")]
    pauses = [index for index, token in enumerate(tokens)
              if token and (token.isspace() or unicodedata.category(token[0])[0] in "PZ")]  # fmt: skip
    return marks, pauses


def token_frame_weights(token_ids: Sequence[Sequence[int]], durations: Sequence[np.ndarray], vocab_size: int):
    """Mean frames of each token type away from the ends, and the mean extra frames of the first and last token.

    Returns:
        `(weights, edges)`: a list of `vocab_size` floats (types never seen get the overall mean) and
        `[first, last]`, the first and last token's mean excess over their type's weight (the silence at the ends).
    """
    totals, counts = np.zeros(vocab_size), np.zeros(vocab_size)
    for ids, frames in zip(token_ids, durations):
        ids, frames = np.asarray(ids), np.asarray(frames, dtype=np.float64)
        if ids.size > 2:
            np.add.at(totals, ids[1:-1], frames[1:-1])
            np.add.at(counts, ids[1:-1], 1)
    overall = totals.sum() / max(counts.sum(), 1)
    weights = np.where(counts > 0, totals / np.maximum(counts, 1), overall)
    first = np.mean([frames[0] - weights[ids[0]] for ids, frames in zip(token_ids, durations)])
    last = np.mean([frames[-1] - weights[ids[-1]] for ids, frames in zip(token_ids, durations)])
    edges = [max(float(first), 0.0), max(float(last), 0.0)]
    return [round(float(w), 4) for w in weights], [round(e, 4) for e in edges]


__all__ = [
    "align_utterances",
    "align_with_model",
    "cepstral_features",
    "silent_token_ids",
    "token_frame_weights",
    "weighted_durations",
]
