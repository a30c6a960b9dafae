"""Scene-type reasoning metrics on hand-computed examples, their Markdown table and the confusion-matrix plot."""

import os

import matplotlib.image
import numpy as np
import pytest

from deepdubber_hf.evaluation.reasoning import (
    CONFUSION_COLUMNS,
    metrics_to_markdown,
    plot_confusion_matrix,
    reasoning_metrics,
)
from deepdubber_hf.reasoner.cot import CoTFailure, DubbingConclusion, parse_cot


def clip(scene_type, gender="female", age="young", emotion="happy", speakers=1):
    return DubbingConclusion(scene_type, speakers, gender, age, emotion)


FAILURE = CoTFailure("missing_section", "no <CONCLUSION> tag")
# 3 dialogues, 2 monologues, 1 narration.
REFERENCES = [
    clip("dialogue", speakers=2),
    clip("dialogue", speakers=2),
    clip("dialogue", speakers=2),
    clip("monologue"),
    clip("monologue", gender="male"),
    clip("narration", age="elderly"),
]
PREDICTIONS = [
    clip("dialogue", speakers=2),  # all right
    clip("monologue", speakers=1),  # wrong scene type and speakers, right attributes
    FAILURE,  # unread: wrong everywhere
    clip("monologue", emotion="sad"),  # wrong emotion
    clip("dialogue", gender="male"),  # wrong scene type
    clip("narration", age="adult"),  # wrong age
]


def test_hand_computed_metrics():
    metrics = reasoning_metrics(PREDICTIONS, REFERENCES)
    assert metrics["num_clips"] == 6
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["recall"] == pytest.approx({"dialogue": 1 / 3, "monologue": 1 / 2, "narration": 1.0})
    assert metrics["average_recall"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert metrics["gender_accuracy"] == pytest.approx(5 / 6)  # only the failure misses
    assert metrics["age_accuracy"] == pytest.approx(4 / 6)
    assert metrics["emotion_accuracy"] == pytest.approx(4 / 6)
    assert metrics["num_speakers_accuracy"] == pytest.approx(4 / 6)
    assert metrics["well_formed"] == pytest.approx(5 / 6)
    assert metrics["failures"] == {"missing_section": 1}
    assert metrics["confusion_matrix_columns"] == list(CONFUSION_COLUMNS)
    assert CONFUSION_COLUMNS == ("dialogue", "monologue", "narration", "unparsed")
    assert metrics["confusion_matrix"] == [
        [1, 1, 0, 1],  # dialogue: right, as monologue, unread
        [1, 1, 0, 0],  # monologue
        [0, 0, 1, 0],  # narration
    ]
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["num_clips"]


def test_average_recall_is_over_classes_present_and_is_not_the_accuracy():
    # Table 1: MMLM-8B's Ave.Recall 85.84 is the mean of 86.33, 73.20, 98.00, while Ave.Acc is 86.00.
    references = [clip("dialogue")] * 4 + [clip("narration")]
    predictions = [clip("dialogue")] * 4 + [clip("monologue")]
    metrics = reasoning_metrics(predictions, references)
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["recall"] == {"dialogue": 1.0, "monologue": None, "narration": 0.0}
    assert metrics["average_recall"] == pytest.approx(0.5)


def test_all_failures_score_zero_and_inputs_are_checked():
    metrics = reasoning_metrics([parse_cot("no idea"), FAILURE], [clip("dialogue"), clip("narration")])
    assert metrics["accuracy"] == metrics["average_recall"] == metrics["well_formed"] == 0.0
    assert metrics["failures"] == {"missing_section": 2}
    assert [row[-1] for row in metrics["confusion_matrix"]] == [1, 0, 1]
    with pytest.raises(ValueError, match="one prediction per reference"):
        reasoning_metrics([FAILURE], [])
    with pytest.raises(ValueError, match="at least one clip"):
        reasoning_metrics([], [])
    with pytest.raises(ValueError, match=r"references\[0\]"):
        reasoning_metrics([FAILURE], [clip("opera")])
    with pytest.raises(ValueError, match="parse_cot"):
        reasoning_metrics(["scene type: dialogue"], [clip("dialogue")])


def test_markdown_table_has_one_row_per_setting_with_the_numbers():
    results = {
        "SFT (QA)": reasoning_metrics(PREDICTIONS, REFERENCES),
        "MPO | F&O": reasoning_metrics(REFERENCES, REFERENCES),
    }
    table = metrics_to_markdown(results, title="Table 2")
    lines = table.strip().splitlines()
    assert lines[0] == "### Table 2"
    header, rows = lines[2], lines[4:]
    for name in ("Acc.", "Avg. recall", "A recall (dialogue)", "B recall (monologue)", "C recall (narration)"):
        assert name in header
    assert "Gender acc." in header and "Age acc." in header and "Emotion acc." in header and "Well-formed" in header
    assert len(rows) == 2
    first = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert first == ["SFT (QA)", "6", "50.00", "61.11", "33.33", "50.00", "100.00", "83.33", "66.67", "66.67", "83.33"]
    assert rows[1].startswith("| MPO \\| F&O | 6 | 100.00 | 100.00 |")
    assert all(len(row.split(" | ")) == len(header.split(" | ")) for row in rows)
    assert not metrics_to_markdown(results, title=None).startswith("#")
    with pytest.raises(ValueError, match="lacks"):
        metrics_to_markdown({"broken": {"accuracy": 1.0}})
    with pytest.raises(ValueError, match="results is empty"):
        metrics_to_markdown({})


def test_confusion_matrix_png_is_written_atomically_and_readable(tmp_path):
    metrics = reasoning_metrics(PREDICTIONS, REFERENCES)
    path = tmp_path / "plots" / "confusion.png"
    assert plot_confusion_matrix(metrics, path, title="SFT (QA)") == str(path)
    assert path.stat().st_size > 0
    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.ptp(image[..., :3]) > 0  # something was drawn
    assert os.listdir(tmp_path / "plots") == ["confusion.png"]  # no temporary file left behind
    # Overwriting replaces the file in one step.
    plot_confusion_matrix(reasoning_metrics(REFERENCES, REFERENCES), path)
    assert os.listdir(tmp_path / "plots") == ["confusion.png"]
    assert matplotlib.image.imread(str(path)).shape[:2] == image.shape[:2]
    with pytest.raises(ValueError, match="confusion_matrix"):
        plot_confusion_matrix({"accuracy": 1.0}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=".png"):
        plot_confusion_matrix(metrics, tmp_path / "x.jpg")


def test_the_local_evaluate_module_gives_the_same_scores():
    from deepdubber_hf.evaluation.metrics import load_metric, metric_names
    from deepdubber_hf.reasoner.generation import parse_response

    assert {"wer", "mcd", "spk_sim", "emo_sim", "lse", "scene_reasoning"} <= set(metric_names())
    truth = [DubbingConclusion("dialogue", 2, "male", "adult", "angry"),
             DubbingConclusion("narration", 1, "female", "elderly", "sad")]  # fmt: skip
    answers = [truth[0].to_text(), "no idea"]
    scores = load_metric("scene_reasoning").compute(predictions=answers, references=[t.to_text() for t in truth],
                                                    mode="qa")  # fmt: skip
    assert scores == reasoning_metrics([parse_response(a, "qa") for a in answers], truth)
    assert scores["accuracy"] == 0.5 and scores["well_formed"] == 0.5
    with pytest.raises(ValueError, match="is not a conclusion"):
        load_metric("scene_reasoning").compute(predictions=answers, references=["dialogue", "narration"])
