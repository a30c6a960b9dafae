"""Emilia (He et al., "Emilia: An Extensive, Multilingual, and Diverse Speech Dataset for Large-Scale Speech
Generation", SLT 2024), one language of it (English by default: DeepDubber-V1 §4.1 trains its TTS on the ~46.8k
hours of English), in the common dubbing schema. Speech only: `video` is None.

Published layouts, and where they are documented
------------------------------------------------
1. JSONL + extracted batches, the first release (open-mmlab/Amphion `preprocessors/Emilia/README.md`, "Emilia
   Dataset Structure")::

       <data_dir>/EN/EN_B00000.jsonl          one clip a line (below)
       <data_dir>/EN/EN_B00000/               = EN_B00000.tar.gz extracted
           EN_B00000_S00000/mp3/EN_B00000_S00000_W000000.mp3

   a line being `{"id": "EN_B00000_S00000_W000000",
   "wav": "EN_B00000/EN_B00000_S00000/mp3/EN_B00000_S00000_W000000.mp3", "text": " You can help ...",
   "duration": 6.264, "speaker": "EN_B00000_S00000", "language": "en", "dnsmos": 3.2927}`,
   `wav` relative to the language folder. (`EN_B00008.tar.gz` comes in two parts on the Hub: `cat` them first.)

2. WebDataset shards, the current Hugging Face release (`amphion/Emilia-Dataset`, loaded as
   `data_files="Emilia/EN/*.tar"`, e.g. amuvarma13/bigds `load_emilia.py`)::

       <data_dir>/Emilia/EN/EN-B000000.tar    (or <data_dir>/EN/*.tar)
           EN_B00000_S00000_W000000.mp3
           EN_B00000_S00000_W000000.json      the same fields as a JSONL line

   members paired by key (the name up to its first dot, WebDataset's rule), not by position. The `Emilia-YODAS`
   extension (Emilia-Large) is not read: the paper uses Emilia.

Layout 1 is used when the language folder holds `*.jsonl` files, else layout 2. Emilia has no splits: everything
goes to `train`.

Columns: `clip_id` the `id`; `audio` the mp3 (a path for layout 1, its bytes for layout 2); `transcript` `text`
without its leading space; `speaker_id` `speaker` (a diarized speaker of one source recording); `duration_s`
`duration`; `video`, `scene_type`, `speaker_gender`, `speaker_age`, `speaker_emotion`, `cot` None; `source` "emilia".
"""

from __future__ import annotations

import glob
import json
import logging
import os
import tarfile
from dataclasses import dataclass

import datasets

from .common import DubbingBuilderConfig, MissingFiles, dubbing_features, make_row, require_data_dir

logger = logging.getLogger(__name__)

LAYOUT = """\
  JSONL release:       <data_dir>/EN/EN_B00000.jsonl + <data_dir>/EN/EN_B00000/EN_B00000_S00000/mp3/*.mp3
  WebDataset release:  <data_dir>/Emilia/EN/*.tar (or <data_dir>/EN/*.tar) holding <id>.mp3 + <id>.json
(open-mmlab/Amphion preprocessors/Emilia/README.md; huggingface.co/datasets/amphion/Emilia-Dataset)"""
REQUIRED_FIELDS = ("id", "text", "duration", "speaker")

_CITATION = """\
@inproceedings{emilia,
  author={He, Haorui and Shang, Zengqiang and Wang, Chaoren and Li, Xuyuan and Gu, Yicheng and Hua, Hua
    and Liu, Liwei and Yang, Chen and Li, Jiaqi and Shi, Peiyang and Wang, Yuancheng and Chen, Kai
    and Zhang, Pengyuan and Wu, Zhizheng},
  title={Emilia: An Extensive, Multilingual, and Diverse Speech Dataset for Large-Scale Speech Generation},
  booktitle={Proc.~of SLT},
  year={2024}
}"""


@dataclass
class EmiliaConfig(DubbingBuilderConfig):
    """Config of :class:`Emilia`.

    Args:
        language (`str`, *optional*, defaults to `"EN"`):
            the language folder to read (`EN`, `ZH`, `DE`, `FR`, `JA`, `KO`).
        missing_files (`str`, *optional*, defaults to `"error"`):
            see `DubbingBuilderConfig`; applies to JSONL lines whose mp3 is absent and to WebDataset keys with only
            one of their two members.
    """

    language: str = "EN"


def _metadata(record: dict, where: str) -> dict:
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise ValueError(f"{where}: the Emilia record lacks {missing} (expected the fields {REQUIRED_FIELDS}).")
    return record


def _row(record: dict, audio) -> dict:
    return make_row(
        clip_id=record["id"],
        source="emilia",
        audio=audio,
        transcript=record["text"].strip(),
        duration_s=float(record["duration"]),
        speaker_id=record["speaker"],
    )


class Emilia(datasets.GeneratorBasedBuilder):
    """One language of Emilia, from either published layout (module docstring).

    Example:

    ```py
    >>> builder = Emilia(data_dir="Emilia-Dataset", cache_dir="cache")
    >>> builder.download_and_prepare()
    >>> builder.as_dataset("train")[0]["speaker_id"]
    'EN_B00000_S00000'
    ```
    """

    BUILDER_CONFIG_CLASS = EmiliaConfig
    BUILDER_CONFIGS = [EmiliaConfig(name="en", version=datasets.Version("1.0.0"), language="EN")]
    DEFAULT_CONFIG_NAME = "en"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=(
                f"Emilia (He et al., SLT 2024), language {self.config.language}: in-the-wild speech (talk shows, "
                "interviews, debates, audiobooks, ...) cut into 3-30 s single-speaker segments and transcribed by "
                "Emilia-Pipe. DeepDubber-V1 (§4.1) trains its TTS on the English part."
            ),
            features=dubbing_features(),
            homepage="https://huggingface.co/datasets/amphion/Emilia-Dataset",
            license="CC BY-NC 4.0 (non-commercial; the audio's copyright stays with its owners)",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        data_dir = require_data_dir(self.config.data_dir, "Emilia", LAYOUT)
        language = self.config.language.upper()
        for folder in (os.path.join(data_dir, language), os.path.join(data_dir, "Emilia", language)):
            jsonl = sorted(glob.glob(os.path.join(folder, f"{language}_B*.jsonl")))
            if jsonl:
                # Checked here, not while generating, where datasets would wrap the error.
                for path in jsonl:
                    batch = os.path.join(folder, os.path.splitext(os.path.basename(path))[0])
                    if not os.path.isdir(batch):
                        hint = f" Extract {batch}.tar.gz there (tar -xzf)." if glob.glob(batch + ".tar.gz*") else ""
                        raise FileNotFoundError(f"{path} lists the mp3 files of {batch!r}, which is absent.{hint}")
                return [
                    datasets.SplitGenerator(
                        name="train", gen_kwargs={"folder": folder, "files": jsonl, "layout": "jsonl"}
                    )
                ]
            shards = sorted(glob.glob(os.path.join(folder, "*.tar")))
            if shards:
                return [
                    datasets.SplitGenerator(
                        name="train", gen_kwargs={"folder": folder, "files": shards, "layout": "webdataset"}
                    )
                ]
        raise FileNotFoundError(
            f"no Emilia {language} batch (*.jsonl or *.tar) in {data_dir!r}/{language} or {data_dir!r}/Emilia/"
            f"{language}; data_dir should hold one of the published layouts:\n{LAYOUT}"
        )

    def _generate_examples(self, folder: str, files: list, layout: str):
        missing = MissingFiles(self.config.missing_files, "Emilia", "train", f"Expected layout:\n{LAYOUT}")
        generate = self._from_jsonl if layout == "jsonl" else self._from_webdataset
        for path in files:
            yield from generate(folder, path, missing)
        missing.report()

    def _from_jsonl(self, folder: str, path: str, missing: MissingFiles):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                record = _metadata(json.loads(line), f"{path}:{number}")
                if "wav" not in record:
                    raise ValueError(
                        f"{path}:{number}: the JSONL record lacks `wav`, the mp3 path relative to {folder}."
                    )
                audio = os.path.join(folder, record["wav"])
                if missing.check(record["id"], audio):
                    yield record["id"], _row(record, audio)

    def _from_webdataset(self, folder: str, path: str, missing: MissingFiles):
        # Only the keys still waiting for their other member are held in memory.
        pending = {}
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                directory, name = os.path.split(member.name)
                stem, _, extension = name.partition(".")
                if extension not in ("mp3", "json"):
                    continue
                key = os.path.join(directory, stem)
                parts = pending.setdefault(key, {})
                parts[extension] = archive.extractfile(member).read()
                if len(parts) < 2:
                    continue
                del pending[key]
                record = _metadata(json.loads(parts["json"]), f"{path}:{member.name}")
                yield record["id"], _row(record, {"bytes": parts["mp3"], "path": f"{stem}.mp3"})
        for key, parts in pending.items():
            absent = "mp3" if "mp3" not in parts else "json"
            missing.check(key, f"{path}::{key}.{absent}")  # raises, or records the key


__all__ = ["Emilia", "EmiliaConfig"]
