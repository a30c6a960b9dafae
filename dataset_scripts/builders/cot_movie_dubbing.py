"""The CoT movie-dubbing dataset of DeepDubber-V1 (§4.1) in the common dubbing schema: movie clips with their speech,
transcript and a chain-of-thought annotation (<SUMMARY>, <CAPTION>, <REASONING>, <CONCLUSION>) that concludes on the
scene type — dialogue, monologue or narration.

Published layout, and where it is documented
--------------------------------------------
GiantAILab/DeepDubber-V1 (mirror of woka-0a/DeepDubber-V1) releases:

- `datasets/CoTMovieDubbing/README.md`, "Data Tree": the clips, one folder per movie, each clip an mp4, its speech
  as mp3 and its transcript as txt (`datasets/CoTMovieDubbing/demos/ai_01250.{mp4,mp3,txt}` is one)::

      <data_dir>/<movie>/<clip>.mp4
      <data_dir>/<movie>/<clip>.mp3
      <data_dir>/<movie>/<clip>.txt

- `datasets/CoTMovieDubbing/filelist/mmlm_test.jsonl`: the test list, one clip a line,
  `{"id": 1, "video": "Chihuahua1/Chihuahua1_00002.mp4", "conversations": [{"from": "human", "value": "What is the
  voice-over category for this video? Options: A. dialogue, B. monologue, C. narration."}, {"from": "gpt", "value":
  "... <CONCLUSION> A </CONCLUSION>"}]}`, `video` relative to the clip folder (`src/internvl/eval.py` joins it to
  `--video_dir` and reads the answer between the <CONCLUSION> tags). Put it at `<data_dir>/filelist/mmlm_test.jsonl`.
- `filelist/cot_spk_for_speech_gen.lst` pairs each test clip with reference clips for voice cloning; it is not a
  speaker label and is not read.

Only the test list is released; a train list in the same format is read when present (`filelist/mmlm_train.jsonl`,
ASSUMED name). The clip folder is `data_dir` unless `media_dir` says otherwise (the `.lst` paths suggest a
`CoTMovieDubbing/` folder: `media_dir="CoTMovieDubbing"`). The paper's levels (people / animals) are not marked in
the list and have no column.

Columns: `clip_id` `<movie>/<clip>`; `video` the mp4; `audio` the mp3; `transcript` the txt; `scene_type` the
option the <CONCLUSION> names (options read from the question); `cot` the annotation; `duration_s` from the mp3
header; `speaker_id`, `speaker_gender`, `speaker_age`, `speaker_emotion` None (not annotated in the release);
`source` "cot-movie-dubbing".
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field

import datasets

from .common import (
    SCENE_TYPES,
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
  <data_dir>/filelist/mmlm_test.jsonl         the released test list
                                              (GiantAILab/DeepDubber-V1 datasets/CoTMovieDubbing/filelist/)
  <data_dir>/<movie>/<clip>.mp4, .mp3, .txt   the clips (datasets/CoTMovieDubbing/README.md, "Data Tree")"""
CONCLUSION = re.compile(r"<CONCLUSION>\s*(.*?)\s*</CONCLUSION>", flags=re.DOTALL)
OPTION = re.compile(r"\b([A-Z])\.\s*([A-Za-z]+)")
# The list writes "dialog" in its reasoning and "dialogue" in its options; both name one scene type.
SCENE_ALIASES = {"dialog": "dialogue"}

_CITATION = """\
@misc{deepdubber_v1,
  title={DeepDubber-V1: Towards High Quality and Dialogue, Narration, Monologue Adaptive Movie Dubbing Via
    Multi-Modal Chain-of-Thoughts Reasoning Guidance},
  howpublished={\\url{https://github.com/woka-0a/DeepDubber-V1}},
  year={2025}
}"""


@dataclass
class CoTMovieDubbingConfig(DubbingBuilderConfig):
    """Config of :class:`CoTMovieDubbing`.

    Args:
        split_files (`dict`, *optional*):
            split name → list, relative to `data_dir`; defaults to
            `{"train": "filelist/mmlm_train.jsonl", "test": "filelist/mmlm_test.jsonl"}`. Absent lists are left
            out; at least one must exist.
        media_dir (`str`, *optional*):
            the folder the lists' `video` paths are relative to, absolute or relative to `data_dir`
            (defaults to `data_dir`).
        missing_files (`str`, *optional*, defaults to `"error"`): see `DubbingBuilderConfig`.
    """

    split_files: dict = field(
        default_factory=lambda: {"train": "filelist/mmlm_train.jsonl", "test": "filelist/mmlm_test.jsonl"}
    )
    media_dir: str | None = None


def parse_annotation(record: dict, where: str) -> tuple:
    """(scene type, chain of thought) of one line of the list."""
    try:
        question = next(turn["value"] for turn in record["conversations"] if turn["from"] == "human")
        answer = next(turn["value"] for turn in record["conversations"] if turn["from"] == "gpt")
    except (KeyError, StopIteration, TypeError):
        raise ValueError(f"{where}: expected `conversations` with a human question and a gpt answer.") from None
    options = {letter: SCENE_ALIASES.get(name.lower(), name.lower()) for letter, name in OPTION.findall(question)}
    conclusion = CONCLUSION.search(answer)
    if conclusion is None:
        raise ValueError(f"{where}: the answer has no <CONCLUSION> ... </CONCLUSION>.")
    letter = conclusion.group(1).strip()
    scene_type = options.get(letter)
    if scene_type not in SCENE_TYPES:
        raise ValueError(
            f"{where}: the conclusion {letter!r} names {scene_type!r} among the question's options {options}; "
            f"expected one of {SCENE_TYPES}."
        )
    return scene_type, answer


def read_list(path: str, media_dir: str) -> list:
    """The clips of an `mmlm_*.jsonl` list: `clip_id`, `files` (mp4, mp3, txt), `scene_type`, `cot`."""
    clips, seen = [], set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not a JSON line ({error}).") from None
            if "video" not in record:
                raise ValueError(f"{where}: the line has no `video` (the clip's mp4, relative to the clip folder).")
            clip_id = os.path.splitext(record["video"])[0]
            if clip_id in seen:
                raise ValueError(f"{where}: clip {clip_id!r} is listed twice.")
            seen.add(clip_id)
            scene_type, cot = parse_annotation(record, where)
            stem = os.path.join(media_dir, clip_id)
            files = (os.path.join(media_dir, record["video"]), stem + ".mp3", stem + ".txt")
            clips.append({"clip_id": clip_id, "files": files, "scene_type": scene_type, "cot": cot})
    return clips


class CoTMovieDubbing(datasets.GeneratorBasedBuilder):
    """The released CoT movie-dubbing test set of DeepDubber-V1 (layout and sources in the module docstring).

    Example:

    ```py
    >>> builder = CoTMovieDubbing(data_dir="CoTMovieDubbing", cache_dir="cache")
    >>> builder.download_and_prepare()
    >>> builder.as_dataset("test")[0]["scene_type"]
    'dialogue'
    ```
    """

    BUILDER_CONFIG_CLASS = CoTMovieDubbingConfig
    BUILDER_CONFIGS = [CoTMovieDubbingConfig(name="default", version=datasets.Version("1.0.0"))]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=(
                "The chain-of-thought movie-dubbing dataset of DeepDubber-V1 (§4.1): movie clips whose speech is a "
                "dialogue, a monologue or narration, with a step-by-step annotation concluding on the scene type. "
                "Only the test list is released (GiantAILab/DeepDubber-V1, datasets/CoTMovieDubbing)."
            ),
            features=dubbing_features(),
            homepage="https://github.com/woka-0a/DeepDubber-V1",
            license="The movies' copyright stays with their owners; research use only.",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        data_dir = require_data_dir(self.config.data_dir, "CoT-Movie-Dubbing", LAYOUT)
        media_dir = os.path.join(data_dir, self.config.media_dir) if self.config.media_dir else data_dir
        if not os.path.isdir(media_dir):
            raise FileNotFoundError(
                f"media_dir {media_dir!r} is not a folder; it should hold <movie>/<clip>.mp4 files."
            )
        lists = {}
        for split, name in self.config.split_files.items():
            path = os.path.join(data_dir, name)
            if os.path.isfile(path):
                lists[split] = path
            else:
                logger.info(f"CoT-Movie-Dubbing: no {path}; the {split} split is left out.")
        if not lists:
            raise FileNotFoundError(
                f"none of the CoT-Movie-Dubbing lists {sorted(self.config.split_files.values())} is in {data_dir!r}: "
                "copy datasets/CoTMovieDubbing/filelist/mmlm_test.jsonl of GiantAILab/DeepDubber-V1 to "
                f"<data_dir>/filelist/, or pass split_files={{split: file}}. Layout:\n{LAYOUT}"
            )
        # Lists and files are checked here, before generation, so that a problem is reported as is (datasets wraps
        # the errors raised while generating in a DatasetGenerationError).
        generators = []
        for split, path in lists.items():
            missing = MissingFiles(self.config.missing_files, "CoT-Movie-Dubbing", split, f"Expected layout:\n{LAYOUT}")
            clips = [clip for clip in read_list(path, media_dir) if missing.check(clip["clip_id"], *clip["files"])]
            missing.report()
            if not clips:
                raise FileNotFoundError(f"no clip of {path} has its files in {media_dir!r}:\n{LAYOUT}")
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"clips": clips}))
        return generators

    def _generate_examples(self, clips: list):
        for clip in clips:
            video, audio, text = clip["files"]
            yield (
                clip["clip_id"],
                make_row(
                    clip_id=clip["clip_id"],
                    source="cot-movie-dubbing",
                    video=video,
                    audio=audio,
                    transcript=read_text(text),
                    duration_s=audio_duration_s(audio),
                    scene_type=clip["scene_type"],
                    cot=clip["cot"],
                ),
            )


__all__ = ["CoTMovieDubbing", "CoTMovieDubbingConfig", "parse_annotation", "read_list"]
