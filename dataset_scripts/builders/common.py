"""What every real-corpus builder shares: the common schema, the builder config, small readers, and the export to
the Hub layout (parquet shards with the media embedded + a README.md whose YAML `configs` name the shards).

The schema is the one of the procedural CoT movie-dubbing corpus (`deepdubber_hf.data.corpus`), cut down to the
columns a real corpus can fill; a corpus leaves `None` where it has no such annotation (see :data:`COLUMNS`).
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
from dataclasses import dataclass
from typing import Literal

import datasets
import yaml
from datasets.arrow_writer import get_writer_batch_size_from_data_size, get_writer_batch_size_from_features
from datasets.table import embed_table_storage
from datasets.utils.py_utils import convert_file_size_to_int

logger = logging.getLogger(__name__)

SOURCES = ("v2c-animation", "grid", "emilia", "cot-movie-dubbing")
SCENE_TYPES = ("dialogue", "monologue", "narration")

# Column → what it holds. Used for the dataset card; the builders' docstrings say how each corpus fills them.
COLUMNS = {
    "clip_id": "unique id of the clip within its corpus (the corpus's own naming, e.g. `FrozenII@Anna_00_1305_00`, "
    "`s1-bbaf2n`, `EN_B00000_S00000_W000000`, `Chihuahua1/Chihuahua1_00002`).",
    "video": "the silent or sounding video clip (`datasets.Video`, decodes to a torchcodec `VideoDecoder`); None "
    "for speech-only corpora (Emilia).",
    "audio": "the speech of the clip at its original sampling rate (`datasets.Audio(sampling_rate=None)`).",
    "transcript": "what is said, as the corpus transcribes it.",
    "speaker_id": "the corpus's speaker label (`Movie@Character` for V2C, `s1`..`s34` for GRID, the Emilia "
    "`speaker` field); None when the corpus has none.",
    "scene_type": "`dialogue`, `monologue` or `narration` when annotated (CoT-Movie-Dubbing), else None.",
    "speaker_gender": "gender of the speaker when annotated, else None (none of the four corpora annotates it).",
    "speaker_age": "age group of the speaker when annotated, else None (none of the four corpora annotates it).",
    "speaker_emotion": "emotion label when annotated (V2C-Animation's 8 FER-2013 classes), else None.",
    "cot": "the chain-of-thought annotation (`<SUMMARY>` … `<CONCLUSION>`) when the corpus has one "
    "(CoT-Movie-Dubbing), else None.",
    "duration_s": "length of the speech in seconds (float32).",
    "source": "which corpus the row comes from: " + ", ".join(f"`{s}`" for s in SOURCES) + ".",
}


def dubbing_features() -> datasets.Features:
    """The `datasets.Features` shared by every real-corpus builder (column meanings in :data:`COLUMNS`)."""
    string = datasets.Value("string")
    return datasets.Features(
        {
            "clip_id": string,
            "video": datasets.Video(),
            "audio": datasets.Audio(sampling_rate=None),
            "transcript": string,
            "speaker_id": string,
            "scene_type": string,
            "speaker_gender": string,
            "speaker_age": string,
            "speaker_emotion": string,
            "cot": string,
            "duration_s": datasets.Value("float32"),
            "source": string,
        }
    )


def make_row(clip_id: str, source: str, audio, transcript: str, duration_s: float, **columns) -> dict:
    """One example of the common schema; columns not given are None.

    `audio` / `video` are a local path or a `{"bytes", "path"}` dict, as `datasets.Audio` / `datasets.Video` take.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")
    unknown = set(columns) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)}; the schema has {list(COLUMNS)}.")
    scene_type = columns.get("scene_type")
    if scene_type is not None and scene_type not in SCENE_TYPES:
        raise ValueError(f"scene_type must be one of {SCENE_TYPES} or None, got {scene_type!r} for {clip_id!r}.")
    row = dict.fromkeys(COLUMNS)
    row.update(columns)
    row.update(clip_id=clip_id, source=source, audio=audio, transcript=transcript, duration_s=float(duration_s))
    return row


@dataclass
class DubbingBuilderConfig(datasets.BuilderConfig):
    """The config every real-corpus builder takes (besides `data_dir`).

    Args:
        missing_files (`str`, *optional*, defaults to `"error"`):
            what to do when a clip named by the corpus's lists has no media file on disk: `"error"` stops with a
            `FileNotFoundError` naming the file, `"skip"` leaves the clip out and logs how many were left out.
    """

    missing_files: Literal["error", "skip"] = "error"


def require_data_dir(data_dir: str | None, corpus: str, layout: str) -> str:
    """`data_dir` made absolute, or an error saying the builder needs it and what it must hold."""
    if not data_dir:
        raise ValueError(
            f"{corpus} is not downloadable: pass data_dir=<folder holding the corpus>, laid out as\n{layout}"
        )
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"data_dir {data_dir!r} for {corpus} is not a folder; it should be laid out as\n{layout}"
        )
    return data_dir


class MissingFiles:
    """Applies `DubbingBuilderConfig.missing_files` to the media of the clips of one split."""

    def __init__(self, policy: str, corpus: str, split: str, layout_hint: str):
        # Checked here, not in the config: `Builder(missing_files=...)` sets the attribute after construction.
        if policy not in ("error", "skip"):
            raise ValueError(f"missing_files must be 'error' or 'skip', got {policy!r}.")
        self.policy, self.corpus, self.split, self.layout_hint = policy, corpus, split, layout_hint
        self.skipped = []

    def check(self, clip_id: str, *paths: str) -> bool:
        """True if every path exists; else raises (policy "error") or records the clip and returns False."""
        for path in paths:
            if not os.path.isfile(path):
                if self.policy == "error":
                    raise FileNotFoundError(
                        f"{self.corpus} clip {clip_id!r} ({self.split} split) has no file {path!r}. {self.layout_hint} "
                        "Pass missing_files='skip' to leave such clips out."
                    )
                self.skipped.append(clip_id)
                return False
        return True

    def report(self):
        if self.skipped:
            logger.warning(
                f"{self.corpus}: left out {len(self.skipped)} clip(s) of the {self.split} split whose media are "
                f"missing (missing_files='skip'), e.g. {self.skipped[:5]}."
            )


def audio_duration_s(source) -> float:
    """Length in seconds of an audio file (a path or its bytes), from its header when it has one."""
    from torchcodec.decoders import AudioDecoder

    decoder = AudioDecoder(source)
    duration = decoder.metadata.duration_seconds_from_header
    if duration is None:  # some containers carry no duration: decode to measure
        samples = decoder.get_all_samples()
        duration = samples.data.shape[-1] / samples.sample_rate
    return float(duration)


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


# ---------------------------------------------------------------------------------------------------------------------
# Export to the Hub layout


def _card_front_matter(readme: str) -> tuple[dict, str]:
    """(YAML metadata, body) of an existing README.md."""
    match = re.match(r"^---\n(.*?)\n---\n?(.*)$", readme, flags=re.DOTALL)
    if not match:
        return {}, readme
    return (yaml.safe_load(match.group(1)) or {}), match.group(2)


def _config_section(config_name: str, card_text: str) -> str:
    return f"<!-- begin config: {config_name} -->\n{card_text.strip()}\n<!-- end config: {config_name} -->\n"


def write_card(out_dir: str, config_name: str, splits: list, card_text: str) -> str:
    """Add or replace `config_name` in `out_dir/README.md`: its YAML `configs` entry and its section of the body.

    Other configs already in the card are kept, so several corpora can be exported into one folder; the first
    config is the default one (what `load_dataset(out_dir)` loads without a config name).
    """
    path = os.path.join(out_dir, "README.md")
    metadata, body = {}, ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            metadata, body = _card_front_matter(handle.read())
    entry = {
        "config_name": config_name,
        "data_files": [{"split": split, "path": f"data/{config_name}/{split}-*.parquet"} for split in splits],
    }
    configs = [c for c in metadata.get("configs", []) if c.get("config_name") != config_name]
    configs.append(entry)
    if not any(c.get("default") for c in configs):
        configs[0]["default"] = True
    metadata["configs"] = configs

    section = _config_section(config_name, card_text)
    pattern = re.compile(
        rf"<!-- begin config: {re.escape(config_name)} -->\n.*?<!-- end config: {re.escape(config_name)} -->\n?",
        flags=re.DOTALL,
    )
    body = pattern.sub(lambda _: section, body) if pattern.search(body) else (body.rstrip() + "\n\n" + section).lstrip()
    text = "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n" + body
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


def export_hub_layout(
    dataset_dict: datasets.DatasetDict,
    out_dir: str,
    config_name: str,
    card_text: str,
    max_shard_size: str | int = "500MB",
) -> list:
    """Write `dataset_dict` as `out_dir/data/<config_name>/<split>-XXXXX-of-YYYYY.parquet` plus `out_dir/README.md`.

    Audio and video files the rows point to are read into the parquet shards (as `push_to_hub` does), so the
    folder is self-contained: `datasets.load_dataset(out_dir, config_name, split="test")` works offline, on
    another machine. Each shard is written to a temporary file and renamed into place, so an interrupted export
    never leaves a truncated shard; shards of an earlier export of the same config and split are removed.

    Args:
        dataset_dict (`datasets.DatasetDict`): the splits to export (e.g. `builder.as_dataset()`).
        out_dir (`str`): the folder to write (created if needed); other configs already in it are kept.
        config_name (`str`): name of the config in the card, and of its folder under `data/`.
        card_text (`str`): the body of the card's section for this config (markdown).
        max_shard_size (`str` or `int`, *optional*, defaults to `"500MB"`): shard size, media included.

    Returns:
        `list[str]`: the paths of the shards written.

    Example:

    ```py
    >>> builder = GridDubbing(data_dir="GRID", cache_dir="cache")
    >>> builder.download_and_prepare()
    >>> export_hub_layout(builder.as_dataset(), "grid_hub", "grid", card_text(builder))
    >>> datasets.load_dataset("grid_hub", split="test")
    ```
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", config_name):
        raise ValueError(f"config_name must be a plain folder name (letters, digits, _ . -), got {config_name!r}.")
    if not isinstance(dataset_dict, datasets.DatasetDict) or not dataset_dict:
        raise ValueError("dataset_dict must be a non-empty datasets.DatasetDict (e.g. builder.as_dataset()).")
    max_shard_size = convert_file_size_to_int(max_shard_size)
    folder = os.path.join(out_dir, "data", config_name)
    os.makedirs(folder, exist_ok=True)
    written = []
    for split, dataset in dataset_dict.items():
        if len(dataset) == 0:
            raise ValueError(f"split {split!r} is empty: nothing to export for config {config_name!r}.")
        # As push_to_hub does: `_estimate_nbytes` counts the media files the shards will hold, and batches of
        # `batch_size` rows (~100 MB) bound both the memory of the embedding and the parquet row groups.
        nbytes = dataset._estimate_nbytes()
        num_shards = min(len(dataset), max(1, math.ceil(nbytes / max_shard_size)))
        batch_size = get_writer_batch_size_from_features(dataset.features) or get_writer_batch_size_from_data_size(
            len(dataset), nbytes
        )
        paths = []
        for index in range(num_shards):
            shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
            # Read the files the rows point to into the table (paths become base names, bytes are stored).
            shard = shard.with_format("arrow").map(
                embed_table_storage, batched=True, batch_size=batch_size, keep_in_memory=True
            )
            path = os.path.join(folder, f"{split}-{index:05d}-of-{num_shards:05d}.parquet")
            tmp = f"{path}.tmp-{os.getpid()}"
            try:
                shard.to_parquet(tmp, batch_size=batch_size)
                os.replace(tmp, path)  # a shard is either complete or absent
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            paths.append(path)
        for stale in set(glob.glob(os.path.join(folder, f"{split}-*.parquet"))) - set(paths):
            os.remove(stale)
        written.extend(paths)
    write_card(out_dir, config_name, list(dataset_dict), card_text)
    return written


def card_text(builder: datasets.DatasetBuilder) -> str:
    """The card section of a builder's corpus: its description, layout source, citation and the column meanings."""
    info = builder.info
    splits = ", ".join(
        f"`{name}` ({split.num_examples} clip{'' if split.num_examples == 1 else 's'})"
        for name, split in (info.splits or {}).items()
    )
    columns = "\n".join(f"- `{name}`: {meaning}" for name, meaning in COLUMNS.items())
    parts = [
        f"## {builder.name} (`{builder.config.name}`)",
        info.description.strip(),
        (
            f"Built from the corpus's published layout by `{type(builder).__name__}` "
            f"(`dataset_scripts/builders/{builder.__module__.rsplit('.', 1)[-1]}.py`, whose docstring gives the "
            "layout and its sources)."
        ),
    ]
    if splits:
        parts.append(f"Splits: {splits}.")
    if info.homepage:
        parts.append(f"Homepage: {info.homepage}")
    if info.license:
        parts.append(f"License: {info.license}")
    parts.append("### Columns\n\n" + columns)
    if info.citation:
        parts.append("### Citation\n\n```bibtex\n" + info.citation.strip() + "\n```")
    return "\n\n".join(parts) + "\n"


__all__ = [
    "COLUMNS",
    "SCENE_TYPES",
    "SOURCES",
    "DubbingBuilderConfig",
    "MissingFiles",
    "audio_duration_s",
    "card_text",
    "dubbing_features",
    "export_hub_layout",
    "make_row",
    "read_text",
    "require_data_dir",
    "write_card",
]
