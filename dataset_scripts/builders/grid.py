"""GRID (Cooke et al., "An audio-visual corpus for speech perception and automatic speech recognition", JASA 2006)
in the common dubbing schema, split as the lip-dubbing benchmark of HPMDubbing / StyleDubber that DeepDubber-V1
(§4.1) reports on: 33 speakers, 32,670 train / 3,280 test clips.

Published layout, and where it is documented
--------------------------------------------
The corpus site (http://spandh.dcs.shef.ac.uk/gridcorpus/, Cooke et al. 2006) serves three archives per speaker
`sN`, N = 1..34; speaker 21's video is not served (the download scripts skip s21), so the audio-visual corpus
has 33 speakers:

- `sN/video/sN.mpg_vcd.zip` → `sN/<utt>.mpg` (25 fps; 3 s),
- `sN/audio/sN.tar` → `sN/<utt>.wav` (25 kHz),
- `sN/align/sN.tar` → `align/<utt>.align`, one word a line `start end word` in 1/25000 s (= video frame × 1000),
  `sil` / `sp` for silences (format: rizkiarm/LipNet issue #45, answered by the maintainer; the three archive
  URLs are the ones the GRID download scripts of lip-reading repositories fetch).

An utterance id `<utt>` is the six-letter GRID command, e.g. `bbaf2n` = "bin blue at f two now". The builder
looks for each modality of speaker `sN` in these folders (first found wins), i.e. the archives extracted per
speaker under `video/`, `audio/`, `align/`, or all into `sN/`::

    video: <data_dir>/video/sN/*.mpg     <data_dir>/sN/video/*.mpg    <data_dir>/sN/*.mpg
    audio: <data_dir>/audio/sN/*.wav     <data_dir>/sN/audio/*.wav    <data_dir>/sN/*.wav
    align: <data_dir>/align/sN/*.align   <data_dir>/align/sN/align/*.align   <data_dir>/sN/align/*.align

The lip-dubbing split lists (GalaxyCong/StyleDubber `dataset.py`: `Dataset_GRIDdataset`, `process_meta`; the
evaluation `0_evaluate_GRID_Setting1.py` reads `val.txt` as its test list and the clips as
`<speaker>/<speaker>-<utt>.wav`) are `basename|speaker|{phones}|raw text` lines with basename `sN-<utt>`, e.g.
`s1-bbaf2n|s1|{B IH1 N ...}|bin blue at f two now`. They are in no public repository we could find (StyleDubber
reads them from its preprocessed-feature folder, `Grid_Wav_22050_Abs_Feature` in `ModelConfig_GRID/.../config_all.txt`),
so they are ASSUMED to be put in `data_dir` as `train.txt` and `test.txt` (pass `split_files` for other names, e.g.
`{"train": "train.txt", "test": "val.txt"}`). Lines holding only `sN-<utt>` are accepted too.

Columns: `clip_id` `sN-<utt>`; `video` the mpg; `audio` the wav; `transcript` the words of the align file
(silences dropped), or the list's raw text when the clip has no align file; `speaker_id` `sN`; `duration_s` from
the wav header; `scene_type`, `speaker_gender`, `speaker_age`, `speaker_emotion`, `cot` None (GRID has no such
labels); `source` "grid".

Configs: `dubbing` (default; the split lists) and `all` (every clip with video and audio, one `train` split).
Note: 32,670 + 3,280 = 35,950 is more than the corpus's 33 × 1,000 clips; the paper's counts are reproduced only
by the lists it used, which this builder reads as they are.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from dataclasses import dataclass, field

import datasets

from .common import DubbingBuilderConfig, MissingFiles, audio_duration_s, dubbing_features, make_row, require_data_dir

logger = logging.getLogger(__name__)

# Speaker 21's video is not served (GRID download scripts skip s21), so the audio-visual GRID has 33 speakers.
SPEAKERS = tuple(f"s{i}" for i in range(1, 35) if i != 21)
SILENCES = ("sil", "sp")
# Candidate folders of each modality of speaker `{s}`, relative to data_dir, in the order they are tried.
FOLDERS = {
    "video": ("video/{s}", "{s}/video", "{s}"),
    "audio": ("audio/{s}", "{s}/audio", "{s}"),
    "align": ("align/{s}", "align/{s}/align", "{s}/align"),
}
EXTENSIONS = {"video": ".mpg", "audio": ".wav", "align": ".align"}
CLIP_ID = re.compile(r"(?P<speaker>s\d+)-(?P<utt>[a-z0-9]+)")

LAYOUT = """\
  <data_dir>/train.txt, test.txt      s1-bbaf2n|s1|{phones}|bin blue at f two now  (the lip-dubbing lists)
  <data_dir>/video/sN/<utt>.mpg       (or sN/video/, or sN/)   from sN/video/sN.mpg_vcd.zip
  <data_dir>/audio/sN/<utt>.wav       (or sN/audio/, or sN/)   from sN/audio/sN.tar
  <data_dir>/align/sN/<utt>.align     (or align/sN/align/, sN/align/)   from sN/align/sN.tar
(archives of http://spandh.dcs.shef.ac.uk/gridcorpus/, N = 1..34 without 21)"""

_CITATION = """\
@article{cooke2006audio,
  title={An audio-visual corpus for speech perception and automatic speech recognition},
  author={Cooke, Martin and Barker, Jon and Cunningham, Stuart and Shao, Xu},
  journal={The Journal of the Acoustical Society of America},
  volume={120},
  number={5},
  pages={2421--2424},
  year={2006}
}"""


@dataclass
class GridConfig(DubbingBuilderConfig):
    """Config of :class:`GridDubbing`.

    Args:
        split_files (`dict`, *optional*, defaults to `{"train": "train.txt", "test": "test.txt"}`):
            split name → lip-dubbing list, relative to `data_dir`. Absent lists are left out; at least one must exist.
        use_split_files (`bool`, *optional*, defaults to `True`):
            False (config `all`) ignores the lists and puts every clip with video and audio in a `train` split.
        missing_files (`str`, *optional*, defaults to `"error"`): see `DubbingBuilderConfig`.
    """

    split_files: dict = field(default_factory=lambda: {"train": "train.txt", "test": "test.txt"})
    use_split_files: bool = True


def read_align(path: str) -> list:
    """`[(start_s, end_s, word)]` of a GRID align file (times in 1/25000 s, silences included)."""
    words = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 3:
                raise ValueError(f"{path}:{number}: expected `start end word`, got {line.strip()!r}.")
            words.append((int(fields[0]) / 25_000, int(fields[1]) / 25_000, fields[2]))
    return words


def align_transcript(path: str) -> str:
    """The spoken words of an align file, e.g. `bin blue at f two now`."""
    return " ".join(word for _, _, word in read_align(path) if word not in SILENCES)


def find_folder(data_dir: str, speaker: str, modality: str):
    """The first existing candidate folder of `modality` for `speaker` (see `FOLDERS`), or None."""
    for template in FOLDERS[modality]:
        folder = os.path.join(data_dir, template.format(s=speaker))
        if glob.glob(os.path.join(folder, "*" + EXTENSIONS[modality])):
            return folder
    return None


def read_split_list(path: str) -> list:
    """`[(clip_id, speaker, raw_text or None)]` of a lip-dubbing list (`sN-<utt>|sN|{phones}|raw text`)."""
    entries, seen = [], set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("|")
            if not fields[0].strip():
                continue
            match = CLIP_ID.fullmatch(fields[0].strip())
            if match is None:
                raise ValueError(f"{path}:{number}: {fields[0]!r} is not a GRID clip id `sN-<utt>` (e.g. s1-bbaf2n).")
            speaker = fields[1].strip() if len(fields) > 1 else match["speaker"]
            if speaker != match["speaker"]:
                raise ValueError(f"{path}:{number}: clip {fields[0]!r} is listed with speaker {speaker!r}.")
            # datasets 5 no longer checks that example keys are unique: a clip listed twice is caught here.
            if match.group(0) in seen:
                raise ValueError(f"{path}:{number}: clip {match.group(0)!r} is listed twice.")
            seen.add(match.group(0))
            entries.append((match.group(0), speaker, fields[3].strip() if len(fields) > 3 else None))
    return entries


class GridDubbing(datasets.GeneratorBasedBuilder):
    """GRID as a lip-dubbing benchmark (layout and sources in the module docstring).

    Example:

    ```py
    >>> builder = GridDubbing(data_dir="GRID", cache_dir="cache")
    >>> builder.download_and_prepare()
    >>> builder.as_dataset("test")[0]["transcript"]
    'bin blue at f two now'
    ```
    """

    BUILDER_CONFIG_CLASS = GridConfig
    BUILDER_CONFIGS = [
        GridConfig(name="dubbing", version=datasets.Version("1.0.0"), description="the lip-dubbing split lists"),
        GridConfig(
            name="all", version=datasets.Version("1.0.0"), use_split_files=False,
            description="every clip with video and audio, one train split",
        ),
    ]  # fmt: skip
    DEFAULT_CONFIG_NAME = "dubbing"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=(
                "GRID (Cooke et al., 2006): 33 speakers saying 1,000 six-word commands each, filmed frontally in a "
                "studio, used as a lip-dubbing benchmark (HPMDubbing, StyleDubber, DeepDubber-V1 §4.1)."
            ),
            features=dubbing_features(),
            homepage="http://spandh.dcs.shef.ac.uk/gridcorpus/",
            license="Available for research use (Cooke et al., 2006); see the corpus site for its terms.",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        data_dir = require_data_dir(self.config.data_dir, "GRID", LAYOUT)
        if not self.config.use_split_files:
            entries = [
                (f"{speaker}-{os.path.splitext(os.path.basename(path))[0]}", speaker, None)
                for speaker in SPEAKERS
                if (folder := find_folder(data_dir, speaker, "video")) is not None
                for path in sorted(glob.glob(os.path.join(folder, "*.mpg")))
            ]
            if not entries:
                raise FileNotFoundError(
                    f"no GRID video (*.mpg) found in {data_dir!r}; it should be laid out as\n{LAYOUT}"
                )
            lists = {"train": entries}
        else:
            lists = {}
            for split, name in self.config.split_files.items():
                path = os.path.join(data_dir, name)
                if os.path.isfile(path):
                    lists[split] = read_split_list(path)
                else:
                    logger.info(f"GRID: no {path}; the {split} split is left out.")
            if not lists:
                raise FileNotFoundError(
                    f"none of the GRID lip-dubbing lists {sorted(self.config.split_files.values())} is in "
                    f"{data_dir!r}. Put StyleDubber's lists there, pass split_files={{split: file}}, or use "
                    f"config_name='all' (export_real_corpus.py --config all) for every clip. Layout:\n{LAYOUT}"
                )
        # Files are checked here, before generation, so that a missing one is reported as is (datasets wraps the
        # errors raised while generating in a DatasetGenerationError).
        folders = {}
        generators = []
        for split, entries in lists.items():
            missing = MissingFiles(
                self.config.missing_files, "GRID", split,
                "GRID media are looked for in video/sN, audio/sN and align/sN (or under sN/), see the GRID builder.",
            )  # fmt: skip
            clips = []
            for clip_id, speaker, raw_text in entries:
                if speaker not in folders:
                    folders[speaker] = {m: find_folder(data_dir, speaker, m) for m in FOLDERS}
                utt = clip_id.split("-", 1)[1]
                paths = {
                    m: os.path.join(
                        folder or os.path.join(data_dir, FOLDERS[m][0].format(s=speaker)), utt + EXTENSIONS[m]
                    )
                    for m, folder in folders[speaker].items()
                }
                # The transcript comes from the align file, or from the list when the clip has none.
                needed = [paths["video"], paths["audio"]] + ([] if raw_text else [paths["align"]])
                if missing.check(clip_id, *needed):
                    clips.append({"clip_id": clip_id, "speaker": speaker, "raw_text": raw_text, **paths})
            missing.report()
            if not clips:
                raise FileNotFoundError(f"no clip of the GRID {split} split has its files in {data_dir!r}:\n{LAYOUT}")
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"clips": clips}))
        return generators

    def _generate_examples(self, clips: list):
        for clip in clips:
            has_align = os.path.isfile(clip["align"])
            yield (
                clip["clip_id"],
                make_row(
                    clip_id=clip["clip_id"],
                    source="grid",
                    video=clip["video"],
                    audio=clip["audio"],
                    transcript=align_transcript(clip["align"]) if has_align else clip["raw_text"],
                    duration_s=audio_duration_s(clip["audio"]),
                    speaker_id=clip["speaker"],
                ),
            )


__all__ = ["SPEAKERS", "GridConfig", "GridDubbing", "align_transcript", "read_align", "read_split_list"]
