"""Reference-voice selection for Dub 1.0 / 2.0 / 3.0 and the initial-reasoning setting."""

import numpy as np
import pytest

from deepdubber_hf.data.references import select_reference

ROWS = [
    {"audio": f"clip{i}.wav", "transcript": f"text {i}", "reference_audio": f"ref{i}.wav",
     "reference_text": f"ref text {i}", "speaker_id": f"spk{i % 3}", "scene_type": "dialogue"}
    for i in range(6)
]


def test_dub_settings():
    rng = np.random.default_rng(0)
    assert select_reference(ROWS, 1, "1.0", rng).audio == "clip1.wav"
    two = select_reference(ROWS, 1, "2.0", rng)
    assert (two.audio, two.text, two.kind) == ("ref1.wav", "ref text 1", "same-speaker")
    for _ in range(20):
        three = select_reference(ROWS, 1, "3.0", rng)
        assert ROWS[three.source_index]["speaker_id"] != "spk1" and three.kind == "other-speaker"


def test_initial_reasoning_depends_on_the_predicted_scene_type():
    rng = np.random.default_rng(0)
    right = select_reference(ROWS, 2, "initial-reasoning", rng, predicted_scene_type="dialogue")
    assert right.source_index == 2 and right.kind == "same-speaker"
    wrong = select_reference(ROWS, 2, "initial-reasoning", rng, predicted_scene_type="narration")
    assert ROWS[wrong.source_index]["speaker_id"] != ROWS[2]["speaker_id"]
    with pytest.raises(ValueError, match="predicted_scene_type"):
        select_reference(ROWS, 2, "initial-reasoning", rng)
    with pytest.raises(ValueError, match="setting must be one of"):
        select_reference(ROWS, 2, "4.0", rng)


def test_single_speaker_dataset_cannot_give_an_unseen_voice():
    rows = [dict(row, speaker_id="same") for row in ROWS]
    with pytest.raises(ValueError, match="single speaker"):
        select_reference(rows, 0, "3.0", np.random.default_rng(0))
