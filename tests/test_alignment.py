"""deepdubber_hf.alignment: splitting frames by weight, forced alignment, and the tokenizer's measured weights."""

import json

import numpy as np
import pytest
import torch

from deepdubber_hf.alignment import (
    align_utterances,
    align_with_model,
    cepstral_features,
    silent_token_ids,
    token_frame_weights,
    weighted_durations,
)
from deepdubber_hf.models.embeddings import average_text_durations
from deepdubber_hf.pipelines.pipeline_deepdubber import _end_sentence, spread_text
from deepdubber_hf.text import DeepDubberTokenizer


def test_weighted_durations_split_in_proportion_and_sum_exactly():
    assert weighted_durations([1.0, 3.0], 8).tolist() == [2, 6]
    assert weighted_durations([0.0, 1.0, 1.0], 7).tolist() == [0, 3, 4]
    assert int(weighted_durations([0.3, 2.2, 5.1, 0.7], 93).sum()) == 93
    assert weighted_durations([], 5).tolist() == []
    # Equal weights (or none measured) give F5-TTS's even split, the extra frames on the last tokens.
    for tokens, frames in ((3, 10), (7, 93), (4, 4), (5, 2)):
        assert weighted_durations([1.0] * tokens, frames).tolist() == average_text_durations(tokens, frames).tolist()
    assert weighted_durations([0.0, 0.0], 5).tolist() == [2, 3]


def _synthetic_utterances(rng, num_utterances=40, vocab_size=6, marks=(5,), pauses=(4,), dim=8):
    """Token sequences with known durations over features whose mean depends on the token type (pause tokens
    sometimes last 0 frames, mark tokens always), with silence at both ends. No token type follows itself (the
    boundary between two equal states cannot be placed)."""
    means = rng.normal(0, 3, size=(vocab_size + 1, dim))  # the last row is the silence
    features, ids, truth = [], [], []
    for _ in range(num_utterances):
        sequence = [int(rng.integers(0, 4))]
        while len(sequence) < int(rng.integers(5, 11)) or sequence[-1] >= 4:
            token = int(rng.choice([0, 1, 2, 3, 4, 5], p=[0.2, 0.2, 0.2, 0.2, 0.1, 0.1]))
            if token != sequence[-1]:
                sequence.append(token)
        durations = [0 if token in marks else int(rng.integers(0 if token in pauses else 2, 9)) for token in sequence]
        lead, trail = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        labels = [vocab_size] * lead + [t for t, d in zip(sequence, durations) for _ in range(d)] + [vocab_size] * trail
        features.append((means[labels] + rng.normal(0, 0.5, size=(len(labels), dim))).astype(np.float32))
        ids.append(sequence)
        durations[0] += lead
        durations[-1] += trail
        truth.append(np.array(durations))
    return features, ids, truth


def test_forced_alignment_recovers_known_durations():
    features, ids, truth = _synthetic_utterances(np.random.default_rng(0))
    found, model = align_utterances(features, ids, vocab_size=6, skippable_ids=[4], mark_ids=[5],
                                    show_progress=False, batch_size=7)  # fmt: skip
    for frames, aligned, expected in zip(features, found, truth):
        assert int(aligned.sum()) == len(frames)
        assert (aligned >= 0).all()
    exact = np.mean([np.array_equal(a, e) for a, e in zip(found, truth)])
    boundary_error = np.mean([np.abs(np.cumsum(a) - np.cumsum(e)).mean() for a, e in zip(found, truth)])
    assert exact > 0.8, exact
    assert boundary_error < 0.2, boundary_error
    for sequence, aligned in zip(ids, found):
        assert all(d == 0 for token, d in zip(sequence, aligned) if token == 5)  # marks never get a frame

    # The trained HMM aligns new speech on its own (here the same speech: the same answer).
    assert np.array(model["means"]).shape == (7, 8) and model["mark_ids"] == [5] and model["skippable_ids"] == [4]
    again = align_with_model(json.loads(json.dumps(model)), features[:5], ids[:5])
    assert all(np.array_equal(a, b) for a, b in zip(again, found[:5]))

    weights, edges = token_frame_weights(ids, found, vocab_size=6)
    assert weights[5] == 0.0 and all(2 <= w <= 9 for w in weights[:4])
    assert 1 <= edges[0] <= 6 and 1 <= edges[1] <= 6


def test_forced_alignment_rejects_what_it_cannot_align():
    frames = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="utterance 0 has 3 frames for 2 tokens"):
        align_utterances([frames], [[0, 1]], vocab_size=2, show_progress=False)
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        align_utterances([np.zeros((9, 4), np.float32)], [[0, 2]], vocab_size=2, show_progress=False)
    with pytest.raises(ValueError, match="not a mark"):
        align_utterances([np.zeros((9, 4), np.float32)], [[1]], vocab_size=2, mark_ids=[1], show_progress=False)


def test_silent_tokens_and_cepstra():
    marks, pauses = silent_token_ids([" ", "a", ",", "ˈ", "ː", "?", "ə"])
    assert marks == [3, 4] and pauses == [0, 2, 5]
    features = cepstral_features(torch.randn(50, 100))
    assert features.shape == (50, 40) and features.dtype == np.float32
    assert np.allclose(features.mean(0), 0, atol=1e-4) and np.allclose(features.std(0), 1, atol=1e-3)


def test_tokenizer_frame_weights_round_trip_and_spread_text(tmp_path):
    tokenizer = DeepDubberTokenizer.from_texts(["the map.", "a cat"], tmp_path / "plain")
    weights = [1.0] * tokenizer.vocab_size
    weights[tokenizer.vocab["a"]] = 4.0
    weights[tokenizer.vocab["."]] = 0.0
    weighted = DeepDubberTokenizer(tokenizer.vocab_file, frame_weights=weights, edge_frames=[2.0, 0.0])
    weighted.save_pretrained(tmp_path / "weighted")
    reloaded = DeepDubberTokenizer.from_pretrained(tmp_path / "weighted")
    assert reloaded.frame_weights == weights and reloaded.edge_frames == [2.0, 0.0]

    ids = reloaded.text_to_ids("a cat")[0]  # a, space, c, a, t: weights 4+2, 1, 1, 4, 1
    assert reloaded.durations(ids, 26).tolist() == [12, 2, 2, 8, 2]
    assert tokenizer.durations(ids, 10).tolist() == average_text_durations(5, 10).tolist()  # no weights: even

    # Reference + new text: each part over its own frames, the padding at zero.
    references, texts = ["the map.", ""], ["a cat", "the cat"]
    text_ids = reloaded.text_to_ids([_end_sentence(r) + t if r else t for r, t in zip(references, texts)])
    spans = spread_text(reloaded, text_ids, references, [30, 0], [60, 20])
    n_ref = len(reloaded.tokens(_end_sentence("the map.")))
    assert int(spans[0, :n_ref].sum()) == 30 and int(spans[0].sum()) == 60
    assert int(spans[1].sum()) == 20 and (spans[1][text_ids[1] < 0] == 0).all()
    assert spans.shape == text_ids.shape

    # With an aligner, recorded speech is aligned; too short for its tokens, it falls back to the weights.
    features, ids, _ = _synthetic_utterances(np.random.default_rng(1), num_utterances=30, marks=(), pauses=(),
                                             vocab_size=tokenizer.vocab_size, dim=40)  # fmt: skip
    _, model = align_utterances(features, ids, tokenizer.vocab_size, show_progress=False)
    aligned = DeepDubberTokenizer(tokenizer.vocab_file, frame_weights=weights, aligner=model)
    aligned.save_pretrained(tmp_path / "aligned")
    aligned = DeepDubberTokenizer.from_pretrained(tmp_path / "aligned")
    mel = torch.randn(40, 100)
    assert int(aligned.align(ids[0][:3], mel).sum()) == 40
    assert aligned.align(ids[0][:3], mel[:4]).tolist() == aligned.durations(ids[0][:3], 4).tolist()
    # spread_text aligns the reference (and, in training, the new speech) when it has their mels.
    text_ids = aligned.text_to_ids(["the map. a cat"])
    n_ref = len(aligned.tokens(_end_sentence("the map.")))
    spans = spread_text(aligned, text_ids, ["the map."], [30], [60], reference_mels=[mel[:30]])
    assert spans[0, :n_ref].tolist() == aligned.align(text_ids[0, :n_ref], mel[:30]).tolist()
    assert spans[0, n_ref:].tolist() == aligned.durations(text_ids[0, n_ref:], 30).tolist()
    spans = spread_text(aligned, text_ids, ["the map."], [30], [60], reference_mels=[mel[:30]], new_mels=[mel[:30]])
    assert spans[0, n_ref:].tolist() == aligned.align(text_ids[0, n_ref:], mel[:30]).tolist()
    with pytest.raises(ValueError, match="aligner must be"):
        DeepDubberTokenizer(tokenizer.vocab_file, aligner={"means": [[0.0]]})

    with pytest.raises(ValueError, match="one non-negative number per token"):
        DeepDubberTokenizer(tokenizer.vocab_file, frame_weights=[1.0])
    with pytest.raises(ValueError, match="edge_frames"):
        DeepDubberTokenizer(tokenizer.vocab_file, edge_frames=[1.0])
