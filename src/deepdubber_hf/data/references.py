"""Which reference voice a dubbing model gets, in each evaluation setting of the paper.

- **Dub 1.0** (``"1.0"``): the ground-truth speech of the clip itself.
- **Dub 2.0** (``"2.0"``): another utterance of the same speaker.
- **Dub 3.0** (``"3.0"``): an utterance of a speaker not in the clip (an unseen voice).
- **Initial reasoning** (``"initial-reasoning"``, Table 1): the target speaker's other utterance when the
  predicted scene type is right, a random other speaker's when it is wrong.

Rows are those of the procedural corpus (or any dataset with its columns: `audio`, `transcript`,
`reference_audio`, `reference_text`, `speaker_id`, `scene_type`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

SETTINGS = ("1.0", "2.0", "3.0", "initial-reasoning")


@dataclass
class ReferenceChoice:
    """The reference voice for one row: `audio` (whatever the dataset holds), its `text`, and where it came from
    (`source_index` is the row it was taken from, `kind` is `"ground-truth"`, `"same-speaker"` or
    `"other-speaker"`)."""

    audio: Any
    text: str
    source_index: int
    kind: str


def _other_speaker_index(dataset, index: int, rng: np.random.Generator) -> int:
    speaker_ids = dataset["speaker_id"] if hasattr(dataset, "column_names") else [r["speaker_id"] for r in dataset]
    own = speaker_ids[index]
    candidates = [i for i, s in enumerate(speaker_ids) if s is not None and s != own]
    if not candidates:
        raise ValueError("the dataset has a single speaker: Dub 3.0 needs rows of another speaker.")
    return int(candidates[int(rng.integers(len(candidates)))])


def select_reference(
    dataset,
    index: int,
    setting: str,
    rng: np.random.Generator,
    predicted_scene_type: Optional[str] = None,
) -> ReferenceChoice:
    """The reference for row `index` of `dataset` in `setting`.

    Args:
        dataset: a `datasets.Dataset` (or a list of row dicts) with the corpus columns.
        index (`int`): the row being dubbed.
        setting (`str`): one of `"1.0"`, `"2.0"`, `"3.0"`, `"initial-reasoning"`.
        rng (`np.random.Generator`): draws the other speaker (Dub 3.0, a wrong initial reasoning).
        predicted_scene_type (`str`, *optional*): the reasoner's scene type, required by `"initial-reasoning"`
            (the `scene_type` column may hold the ClassLabel id or its name).
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}.")
    row = dataset[index]
    if setting == "1.0":
        return ReferenceChoice(row["audio"], row["transcript"], index, "ground-truth")
    if setting == "2.0":
        return ReferenceChoice(row["reference_audio"], row["reference_text"], index, "same-speaker")
    if setting == "initial-reasoning":
        if predicted_scene_type is None:
            raise ValueError("setting 'initial-reasoning' needs predicted_scene_type (the reasoner's answer).")
        truth = row["scene_type"]
        if isinstance(truth, int) and hasattr(dataset, "features"):
            truth = dataset.features["scene_type"].int2str(truth)
        if predicted_scene_type == truth:
            return ReferenceChoice(row["reference_audio"], row["reference_text"], index, "same-speaker")
    other = _other_speaker_index(dataset, index, rng)
    other_row = dataset[other]
    return ReferenceChoice(other_row["reference_audio"], other_row["reference_text"], other, "other-speaker")


__all__ = ["SETTINGS", "ReferenceChoice", "select_reference"]
