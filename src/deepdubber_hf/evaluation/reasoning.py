"""Scene-type reasoning metrics (Tables 1–3 of the paper), from parsed predictions and ground-truth conclusions.

The paper scores the reasoner on dialogue (A), monologue (B) and narration (C): the accuracy over all clips
("Ave.Acc"), the recall of each class and their mean ("Ave.Recall", e.g. 85.84 = mean(86.33, 73.20, 98.00) for
MMLM-8B in Table 1). We add the accuracy of the speaker attributes the conclusion also gives (gender, age, emotion)
and the share of responses that could be read at all. A response that could not be read (a
[`~deepdubber_hf.reasoner.cot.CoTFailure`]) counts as wrong everywhere.
"""

from __future__ import annotations

import os
from collections import Counter

from ..data.schema import SCENE_TYPES
from ..reasoner.cot import FAILURE_REASONS, CoTFailure, DubbingConclusion

# The paper's column letters: dialogue (A), monologue (B), narration (C).
CLASS_LETTERS = {"dialogue": "A", "monologue": "B", "narration": "C"}
UNPARSED = "unparsed"
# Rows of the confusion matrix are the reference scene types, columns the predicted ones plus the unread responses.
CONFUSION_ROWS = SCENE_TYPES
CONFUSION_COLUMNS = (*SCENE_TYPES, UNPARSED)
ATTRIBUTES = ("gender", "age", "emotion")
# What a results entry needs for one row of `metrics_to_markdown`.
_TABLE_KEYS = (
    "num_clips",
    "accuracy",
    "average_recall",
    "recall",
    "well_formed",
    "gender_accuracy",
    "age_accuracy",
    "emotion_accuracy",
)


def reasoning_metrics(predictions: list, references: list) -> dict:
    """Scene-type accuracy and recalls, attribute accuracies and the confusion matrix of a set of clips.

    Args:
        predictions (`list` of `DubbingConclusion` or `CoTFailure`):
            what was read from each response, e.g. by `parse_cot` (CoT mode) or `parse_conclusion` (QA mode).
        references (`list` of `DubbingConclusion`):
            the ground truth of each clip, in the same order.

    Returns:
        `dict` (JSON-serialisable; rates are fractions in [0, 1], not percentages) with:

        - `num_clips` (`int`);
        - `accuracy`: share of clips whose scene type is right ("Ave.Acc" in the paper);
        - `recall`: `{"dialogue": ..., "monologue": ..., "narration": ...}`, the share of the clips of each reference
          class predicted as that class (`None` for a class absent from the references);
        - `average_recall`: the mean of the recalls of the classes present ("Ave.Recall");
        - `gender_accuracy`, `age_accuracy`, `emotion_accuracy`, `num_speakers_accuracy`;
        - `well_formed`: share of responses that could be read (not a `CoTFailure`);
        - `failures`: how many responses failed, by `CoTFailure.reason`;
        - `confusion_matrix`: counts, one row per reference scene type (`confusion_matrix_rows`), one column per
          predicted scene type plus `"unparsed"` (`confusion_matrix_columns`).

    Example:

    ```py
    >>> from deepdubber_hf.evaluation.reasoning import reasoning_metrics
    >>> from deepdubber_hf.reasoner.cot import CoTFailure, DubbingConclusion
    >>> dialogue = DubbingConclusion("dialogue", 2, "male", "adult", "angry")
    >>> monologue = DubbingConclusion("monologue", 1, "female", "child", "happy")
    >>> metrics = reasoning_metrics([dialogue, CoTFailure("missing_section", "no <CONCLUSION>")], [dialogue, monologue])
    >>> metrics["accuracy"], metrics["recall"], metrics["average_recall"], metrics["well_formed"]
    (0.5, {'dialogue': 1.0, 'monologue': 0.0, 'narration': None}, 0.5, 0.5)
    >>> metrics["confusion_matrix"]
    [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    ```
    """
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references: give one prediction per reference."
        )
    if not references:
        raise ValueError("predictions and references are empty: give at least one clip to score.")
    for index, reference in enumerate(references):
        if not isinstance(reference, DubbingConclusion) or reference.scene_type not in SCENE_TYPES:
            raise ValueError(
                f"references[{index}] must be a DubbingConclusion with a scene type in {SCENE_TYPES}, "
                f"got {reference!r}."
            )
    for index, prediction in enumerate(predictions):
        parsed = isinstance(prediction, DubbingConclusion) and prediction.scene_type in SCENE_TYPES
        if not parsed and not isinstance(prediction, CoTFailure):
            raise ValueError(
                f"predictions[{index}] must be a DubbingConclusion with a scene type in {SCENE_TYPES} or a "
                f"CoTFailure, got {prediction!r}: read responses with parse_cot or parse_conclusion."
            )

    num_clips = len(references)
    confusion = [[0] * len(CONFUSION_COLUMNS) for _ in CONFUSION_ROWS]
    for prediction, reference in zip(predictions, references):
        column = CONFUSION_COLUMNS.index(prediction.scene_type if prediction else UNPARSED)
        confusion[CONFUSION_ROWS.index(reference.scene_type)][column] += 1

    recall = {}
    for row, scene_type in enumerate(CONFUSION_ROWS):
        support = sum(confusion[row])
        recall[scene_type] = confusion[row][row] / support if support else None
    present = [value for value in recall.values() if value is not None]

    def field_accuracy(name: str) -> float:
        # A failed parse has no fields, so it is wrong on every one of them.
        hits = sum(1 for p, r in zip(predictions, references) if p and getattr(p, name) == getattr(r, name))
        return hits / num_clips

    failures = Counter(p.reason for p in predictions if not p)
    return {
        "num_clips": num_clips,
        "accuracy": field_accuracy("scene_type"),
        "average_recall": sum(present) / len(present),
        "recall": recall,
        **{f"{name}_accuracy": field_accuracy(name) for name in (*ATTRIBUTES, "num_speakers")},
        "well_formed": sum(1 for p in predictions if p) / num_clips,
        "failures": {reason: failures[reason] for reason in FAILURE_REASONS if failures[reason]},
        "confusion_matrix": confusion,
        "confusion_matrix_rows": list(CONFUSION_ROWS),
        "confusion_matrix_columns": list(CONFUSION_COLUMNS),
    }


def reference_conclusions(dataset) -> list:
    """The ground-truth `DubbingConclusion` of every row of a `datasets` dataset in the DeepDubber schema (scene
    type — a ClassLabel or a string —, number of speakers, the target speaker's gender, age and emotion)."""
    names = dataset.features["scene_type"]
    rows = dataset.select_columns(["scene_type", "num_speakers", "speaker_gender", "speaker_age", "speaker_emotion"])
    return [
        DubbingConclusion(
            scene_type=names.int2str(row["scene_type"]) if hasattr(names, "int2str") else row["scene_type"],
            num_speakers=row["num_speakers"],
            gender=row["speaker_gender"],
            age=row["speaker_age"],
            emotion=row["speaker_emotion"],
        )
        for row in rows
    ]


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def metrics_to_markdown(results: dict[str, dict], title: str | None = "Scene-type reasoning") -> str:
    """A Markdown table of :func:`reasoning_metrics` results, one row per model or setting, laid out as Tables 1–2.

    Args:
        results (`dict[str, dict]`):
            name of the model / setting (e.g. `"SFT (QA)"`) → its :func:`reasoning_metrics` dict, rows in this
            order.
        title (`str`, *optional*, defaults to `"Scene-type reasoning"`):
            a `###` heading above the table; `None` for none.

    Returns:
        `str`: the table, percentages with two decimals (`–` for a class absent from the references).

    Example:

    ```py
    >>> from deepdubber_hf.evaluation.reasoning import metrics_to_markdown, reasoning_metrics
    >>> from deepdubber_hf.reasoner.cot import DubbingConclusion
    >>> clip = DubbingConclusion("narration", 1, "female", "elderly", "sad")
    >>> print(metrics_to_markdown({"SFT (QA)": reasoning_metrics([clip], [clip])}, title=None).splitlines()[2])
    | SFT (QA) | 1 | 100.00 | 100.00 | – | – | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 |
    ```
    """
    if not results:
        raise ValueError("results is empty: give at least one `name: reasoning_metrics(...)` entry.")
    header = [
        "Model",
        "Clips",
        "Acc. (%) ↑",
        "Avg. recall (%) ↑",
        *(f"{CLASS_LETTERS[c]} recall ({c}) (%) ↑" for c in SCENE_TYPES),
        *(f"{name.capitalize()} acc. (%) ↑" for name in ATTRIBUTES),
        "Well-formed (%) ↑",
    ]
    lines = [] if title is None else [f"### {title}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    for name, metrics in results.items():
        missing = [key for key in _TABLE_KEYS if key not in metrics]
        if missing:
            raise ValueError(
                f"results[{name!r}] lacks {', '.join(missing)}: give the dict returned by reasoning_metrics."
            )
        cells = [
            str(name).replace("|", "\\|"),
            str(metrics["num_clips"]),
            _percent(metrics["accuracy"]),
            _percent(metrics["average_recall"]),
            *(_percent(metrics["recall"].get(c)) for c in SCENE_TYPES),
            *(_percent(metrics[f"{a}_accuracy"]) for a in ATTRIBUTES),
            _percent(metrics["well_formed"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_confusion_matrix(metrics: dict, path: str | os.PathLike, title: str | None = None) -> str:
    """Draw the scene-type confusion matrix of :func:`reasoning_metrics` to a PNG (written atomically).

    Cells show the counts, coloured by the share of their row (so the diagonal reads as the recall of each class).

    Args:
        metrics (`dict`): a :func:`reasoning_metrics` result.
        path (`str` or `os.PathLike`): the PNG to write; its folder is created if needed.
        title (`str`, *optional*): the figure title; defaults to the accuracy and average recall.

    Returns:
        `str`: `path`.

    Example:

    ```py
    >>> import os, tempfile
    >>> from deepdubber_hf.evaluation.reasoning import plot_confusion_matrix, reasoning_metrics
    >>> from deepdubber_hf.reasoner.cot import DubbingConclusion
    >>> clip = DubbingConclusion("dialogue", 2, "male", "young", "happy")
    >>> path = plot_confusion_matrix(reasoning_metrics([clip], [clip]), os.path.join(tempfile.mkdtemp(), "cm.png"))
    >>> os.path.getsize(path) > 0
    True
    ```
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("plot_confusion_matrix needs matplotlib: `pip install matplotlib`.") from error

    matrix = metrics.get("confusion_matrix") if isinstance(metrics, dict) else None
    shape_ok = (
        isinstance(matrix, list)
        and len(matrix) == len(CONFUSION_ROWS)
        and all(isinstance(row, list) and len(row) == len(CONFUSION_COLUMNS) for row in matrix)
    )
    if not shape_ok:
        raise ValueError(
            f"metrics must hold a {len(CONFUSION_ROWS)}x{len(CONFUSION_COLUMNS)} `confusion_matrix`: give the dict "
            "returned by reasoning_metrics."
        )
    shares = [[count / sum(row) if sum(row) else 0.0 for count in row] for row in matrix]
    # A Figure with its own Agg canvas: no pyplot global state, safe in scripts and threads.
    figure = Figure(figsize=(6.0, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            color = "white" if shares[i][j] > 0.5 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=color)
    axes.set_xticks(range(len(CONFUSION_COLUMNS)))
    axes.set_xticklabels([f"{CLASS_LETTERS[c]}\n{c}" if c in CLASS_LETTERS else f"\n{c}" for c in CONFUSION_COLUMNS])
    axes.set_yticks(range(len(CONFUSION_ROWS)))
    axes.set_yticklabels([f"{CLASS_LETTERS[c]} {c}" for c in CONFUSION_ROWS])
    axes.set_xlabel("predicted")
    axes.set_ylabel("reference")
    if title is None and "accuracy" in metrics and "average_recall" in metrics:
        title = f"Acc. {_percent(metrics['accuracy'])}%, avg. recall {_percent(metrics['average_recall'])}%"
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, label="share of the reference class")
    figure.tight_layout()

    from .report import save_figure

    return save_figure(figure, path)


__all__ = [
    "reference_conclusions",
    "CLASS_LETTERS",
    "CONFUSION_COLUMNS",
    "CONFUSION_ROWS",
    "metrics_to_markdown",
    "plot_confusion_matrix",
    "reasoning_metrics",
]
