"""V2C-Animation (Chen et al., "V2C: Visual Voice Cloning", CVPR 2022) in the common dubbing schema.

10,217 clips of 153 characters from 26 animated films, with the character's speech, the subtitle and one of 8
emotion labels; DeepDubber-V1 (§4.1) uses the 60% / 10% / 30% train / validation / test split of the dubbing
papers that followed (HPMDubbing, StyleDubber).

Published layout, and where it is documented
--------------------------------------------
The clips are not redistributed (copyright); they are cut from the films with the V2C toolkit, which writes
(chenqi008/V2C, `DataConstruction/README.md` and `DataConstruction/toolkit_data.py`)::

    <data_dir>/<Movie>/<Movie>_speeches/<Speaker>/00/<Speaker>-00-<NNNN>.wav             16 kHz speech
    <data_dir>/<Movie>/<Movie>_speeches/<Speaker>/00/<Speaker>-00-<NNNN>.normalized.txt   the subtitle
    <data_dir>/<Movie>/<Movie>_videos/<Speaker>/<NNNN>.mp4                                the clip

where `NNNN` is the subtitle's index in `DataConstruction/SRT/<Movie>.srt` (`movie_speaker_id.json` lists them).
The split lists and labels sit at the top of `data_dir`:

- `train.txt`, `val.txt`, `test.txt` — one clip a line, `Movie@Speaker_00_NNNN_00|Movie@Speaker|{phones}|raw text`,
  the FastSpeech2-style metadata read by GalaxyCong/HPMDubbing (`dataset.py`, `process_meta`;
  `preprocessor/preprocessor.py` writes `basename|speaker|{phones}|raw_text`) and GalaxyCong/StyleDubber
  (`dataset.py`). The reference-pair lists of the evaluation settings are read as well:
  `basename|{phones}|speaker|ref_basename|{ref phones}` (GiantAILab/DeepDubber-V1 `datasets/V2C/V2C_Setting2.txt`,
  StyleDubber `inference_process_meta`) and `basename|{phones}|ref_basename|{ref phones}` (`V2C_Setting3.txt`,
  references from GRID); a clip listed with several references is one row.
- `emotions.json` (optional) — `{"Movie@Speaker_00_NNNN_00": k}`, k = 0 angry, 1 disgust, 2 fear, 3 happy,
  4 neutral, 5 sad, 6 surprise, 7 others (chenqi008/V2C `DataConstruction/emotions.json` and its README).

The clip id `Movie@Speaker_00_NNNN_00` of the lists names the toolkit's files: movie `Movie`, character `Speaker`,
folder `00`, subtitle `NNNN`. ASSUMED (not documented anywhere we found): the trailing `_00` is a constant part
index, and the toolkit's folder and file names use the same spelling as the lists (e.g. `FrozenII`, `Anna`).
The split lists themselves are in no public repository we could find (HPMDubbing reads them from its
preprocessed-feature folder, whose download its README links); put them in `data_dir` under the names above or
pass `split_files`.

Columns: `clip_id` the list basename; `video` the mp4; `audio` the wav; `transcript` the list's raw text (the
`.normalized.txt` subtitle when the list has none); `speaker_id` `Movie@Speaker`; `speaker_emotion` the
emotions.json label (`surprise` written `surprised`, as in the project's vocabulary), None when the file is absent;
`scene_type`, `speaker_gender`, `speaker_age`, `cot` None; `duration_s` from the wav header;
`source` "v2c-animation".

Configs: `default` (the split lists) and `all` (every clip of the toolkit tree, in one `train` split).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from dataclasses import dataclass, field

import datasets

from .common import (
    DubbingBuilderConfig,
    MissingFiles,
    audio_duration_s,
    dubbing_features,
    make_row,
    read_text,
    require_data_dir,
)

logger = logging.getLogger(__name__)

LAYOUT = """\
  <data_dir>/train.txt, val.txt, test.txt   Movie@Speaker_00_NNNN_00|Movie@Speaker|{phones}|raw text
  <data_dir>/emotions.json                  (optional) {"Movie@Speaker_00_NNNN_00": 0-7}
  <data_dir>/<Movie>/<Movie>_speeches/<Speaker>/00/<Speaker>-00-<NNNN>.wav (+ .normalized.txt)
  <data_dir>/<Movie>/<Movie>_videos/<Speaker>/<NNNN>.mp4
(the V2C toolkit's output, chenqi008/V2C DataConstruction/README.md)"""

# chenqi008/V2C DataConstruction/README.md: "0: angry, 1: disgust, 2: fear, 3: happy, 4: neutral, 5: sad,
# 6: surprise, and 7: others"; 6 is spelled as in deepdubber_hf.data.schema.EMOTIONS.
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprised", "others")

BASENAME = re.compile(r"(?P<movie>[^@/]+)@(?P<speaker>[^/]+)_(?P<folder>\d{2})_(?P<index>\d{4})_(?P<part>\d{2})")

_CITATION = """\
@inproceedings{chen2022v2c,
  title={V2C: Visual Voice Cloning},
  author={Chen, Qi and Tan, Mingkui and Qi, Yuankai and Zhou, Jiaqiu and Li, Yuanqing and Wu, Qi},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition},
  pages={21242--21251},
  year={2022}
}"""


@dataclass
class V2CAnimationConfig(DubbingBuilderConfig):
    """Config of :class:`V2CAnimation`.

    Args:
        split_files (`dict`, *optional*):
            split name → list file, relative to `data_dir`; defaults to
            `{"train": "train.txt", "validation": "val.txt", "test": "test.txt"}`. Lists that are absent are left
            out (at least one must exist); e.g. `{"test": "V2C_Setting2.txt"}` builds the test list released with
            DeepDubber-V1.
        use_split_files (`bool`, *optional*, defaults to `True`):
            False (config `all`) ignores the lists and puts every clip of the toolkit tree in a `train` split.
        missing_files (`str`, *optional*, defaults to `"error"`): see `DubbingBuilderConfig`.
    """

    split_files: dict = field(
        default_factory=lambda: {"train": "train.txt", "validation": "val.txt", "test": "test.txt"}
    )
    use_split_files: bool = True


def parse_basename(basename: str) -> dict:
    """`FrozenII@Anna_00_1305_00` → `{"movie": "FrozenII", "speaker": "Anna", "folder": "00", "index": "1305",
    "part": "00"}`."""
    match = BASENAME.fullmatch(basename)
    if match is None:
        raise ValueError(
            f"{basename!r} is not a V2C clip id: expected Movie@Speaker_00_NNNN_00 (e.g. FrozenII@Anna_00_1305_00)."
        )
    return match.groupdict()


def clip_paths(data_dir: str, basename: str) -> tuple:
    """(wav, subtitle, mp4) of a clip in the V2C toolkit's tree."""
    p = parse_basename(basename)
    stem = f"{p['speaker']}-{p['folder']}-{p['index']}"
    speeches = os.path.join(data_dir, p["movie"], f"{p['movie']}_speeches", p["speaker"], p["folder"])
    video = os.path.join(data_dir, p["movie"], f"{p['movie']}_videos", p["speaker"], f"{p['index']}.mp4")
    return os.path.join(speeches, f"{stem}.wav"), os.path.join(speeches, f"{stem}.normalized.txt"), video


def read_split_list(path: str) -> list:
    """`[(basename, speaker, raw_text or None)]` of a V2C list, one entry per clip, in list order.

    Reads the metadata format (`basename|speaker|{phones}|raw_text`) and the reference-pair formats
    (`basename|{phones}|speaker|ref|{phones}`, `basename|{phones}|ref|{phones}`); see the module docstring.
    """
    entries, seen = [], set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) < 2:
                raise ValueError(
                    f"{path}:{number}: expected `basename|speaker|{{phones}}|raw text` (or a reference-pair line), "
                    f"got {line!r}."
                )
            basename = fields[0].strip()
            parsed = parse_basename(basename)
            pair_list = fields[1].startswith("{")
            if pair_list:  # reference-pair list: the clip's text is read from its subtitle file
                speaker = fields[2] if len(fields) == 5 else f"{parsed['movie']}@{parsed['speaker']}"
                raw_text = None
            else:
                speaker, raw_text = fields[1], (fields[3].strip() if len(fields) > 3 else None)
            if basename in seen:
                if pair_list:  # pair lists repeat a clip once per reference
                    continue
                # datasets 5 no longer checks that example keys are unique: a clip listed twice is caught here.
                raise ValueError(f"{path}:{number}: clip {basename!r} is listed twice.")
            seen.add(basename)
            entries.append((basename, speaker, raw_text or None))
    return entries


class V2CAnimation(datasets.GeneratorBasedBuilder):
    """V2C-Animation from the V2C toolkit's output plus the dubbing split lists (layout in the module docstring).

    Example:

    ```py
    >>> builder = V2CAnimation(data_dir="V2C", cache_dir="cache")
    >>> builder.download_and_prepare()
    >>> builder.as_dataset("test")[0]["speaker_id"]
    'FrozenII@Anna'
    ```
    """

    BUILDER_CONFIG_CLASS = V2CAnimationConfig
    BUILDER_CONFIGS = [
        V2CAnimationConfig(name="default", version=datasets.Version("1.0.0"), description="the dubbing split lists"),
        V2CAnimationConfig(
            name="all", version=datasets.Version("1.0.0"), use_split_files=False,
            description="every clip of the V2C toolkit tree, one train split",
        ),
    ]  # fmt: skip
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=(
                "V2C-Animation (Chen et al., CVPR 2022): clips of 153 characters from 26 animated films with the "
                "character's speech, subtitle and emotion label, split as in the dubbing papers (HPMDubbing, "
                "StyleDubber, DeepDubber-V1 §4.1). Built from the V2C toolkit's output (chenqi008/V2C)."
            ),
            features=dubbing_features(),
            homepage="https://github.com/chenqi008/V2C",
            license="The films' copyright stays with their owners; research use only (see chenqi008/V2C).",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        data_dir = require_data_dir(self.config.data_dir, "V2C-Animation", LAYOUT)
        emotions = {}
        emotions_path = os.path.join(data_dir, "emotions.json")
        if os.path.isfile(emotions_path):
            with open(emotions_path, encoding="utf-8") as handle:
                emotions = json.load(handle)
        else:
            logger.info(f"V2C-Animation: no {emotions_path}; speaker_emotion will be None.")

        if not self.config.use_split_files:
            lists = {"train": self._walk_tree(data_dir)}
        else:
            lists = {}
            for split, name in self.config.split_files.items():
                path = os.path.join(data_dir, name)
                if os.path.isfile(path):
                    lists[split] = read_split_list(path)
                else:
                    logger.info(f"V2C-Animation: no {path}; the {split} split is left out.")
            if not lists:
                raise FileNotFoundError(
                    f"none of the V2C split lists {sorted(self.config.split_files.values())} is in {data_dir!r}. Put "
                    "the dubbing lists there, pass split_files={split: file}, or use config_name='all' "
                    "(export_real_corpus.py --config all). Layout:\n" + LAYOUT
                )
        # Files are checked here, before generation, so that a missing one is reported as is (datasets wraps the
        # errors raised while generating in a DatasetGenerationError).
        generators = []
        for split, entries in lists.items():
            missing = MissingFiles(
                self.config.missing_files, "V2C-Animation", split,
                "V2C clips are laid out by the V2C toolkit (chenqi008/V2C DataConstruction/README.md).",
            )  # fmt: skip
            clips = []
            for basename, speaker, raw_text in entries:
                wav, subtitle, video = clip_paths(data_dir, basename)
                needed = (wav, video) if raw_text is not None else (wav, video, subtitle)
                if missing.check(basename, *needed):
                    clips.append({"basename": basename, "speaker": speaker, "raw_text": raw_text, "wav": wav,
                                  "subtitle": subtitle, "video": video})  # fmt: skip
            missing.report()
            if not clips:
                raise FileNotFoundError(f"no clip of the V2C {split} split has its files in {data_dir!r}:\n{LAYOUT}")
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"clips": clips, "emotions": emotions}))
        return generators

    def _walk_tree(self, data_dir: str) -> list:
        """Every clip of the toolkit tree as `(basename, speaker, None)`, basenames as in the split lists."""
        pattern = os.path.join(data_dir, "*", "*_speeches", "*", "*", "*.wav")
        entries = []
        for wav in sorted(glob.glob(pattern)):
            folder, name = os.path.split(wav)
            speaker_dir, folder_name = os.path.split(folder)
            movie = os.path.basename(os.path.dirname(os.path.dirname(speaker_dir)))
            speaker = os.path.basename(speaker_dir)
            match = re.fullmatch(rf"{re.escape(speaker)}-(\d{{2}})-(\d{{4}})\.wav", name)
            if match is None or match.group(1) != folder_name:
                raise ValueError(f"{wav!r} is not named <Speaker>-<folder>-<NNNN>.wav as the V2C toolkit names clips.")
            entries.append((f"{movie}@{speaker}_{match.group(1)}_{match.group(2)}_00", f"{movie}@{speaker}", None))
        if not entries:
            raise FileNotFoundError(
                f"no clip matches {pattern!r}: data_dir should hold the V2C toolkit's output:\n{LAYOUT}"
            )
        return entries

    def _generate_examples(self, clips: list, emotions: dict):
        for clip in clips:
            basename = clip["basename"]
            label = emotions.get(basename)
            if label is not None and not 0 <= int(label) < len(EMOTIONS):
                raise ValueError(f"emotions.json gives {basename!r} label {label!r}; V2C labels are 0-7 ({EMOTIONS}).")
            yield (
                basename,
                make_row(
                    clip_id=basename,
                    source="v2c-animation",
                    video=clip["video"],
                    audio=clip["wav"],
                    transcript=clip["raw_text"] if clip["raw_text"] is not None else read_text(clip["subtitle"]),
                    duration_s=audio_duration_s(clip["wav"]),
                    speaker_id=clip["speaker"],
                    speaker_emotion=None if label is None else EMOTIONS[int(label)],
                ),
            )


__all__ = ["EMOTIONS", "V2CAnimation", "V2CAnimationConfig", "clip_paths", "parse_basename", "read_split_list"]
