"""Batch dubbing: one dubbed clip per row of a manifest (or of a dataset in the project's schema), spread over
processes with `accelerate`, resumable after a crash.

    deepdubber dub-batch clips/ dubbed/ --model runs/dubber
    accelerate launch --num_processes 4 -m deepdubber_hf.cli dub-batch clips/ dubbed/ --model runs/dubber

The input is one of:

- a manifest, `manifest.csv` or `manifest.jsonl` in the input folder (or the file itself), one row per clip, with
  the columns
    - `video`: the silent clip, relative to the manifest's folder (required);
    - `text` or `subtitles`: the line to speak, or an `.srt` file of timed lines (one of the two);
    - `reference_audio`, `reference_text`: the voice to clone and its transcript (optional; for the named speakers
      of subtitles, several: a JSON list, or in a CSV cell separated by `|`);
    - `speaker`: who speaks (optional); rows of a speaker without a voice of their own take the voice of the
      first row of that speaker that has one;
    - `conclusion`: skips the reasoner, e.g. `scene type: monologue; speakers: 1; gender: female; age: young;
      emotion: happy` (optional);
    - `id`: the row's name, letters, digits, `.`, `_` and `-` (optional): its output is `<id>.mp4`. By default
      the video's name and a hash of the row's video, text and subtitles;
- a `datasets` dataset in the corpus's schema (a `save_to_disk` folder, a Hub-layout folder or a Hub id, with
  `dataset_config` and `split`): `video`, `transcript`, `reference_audio`, `reference_text`, and `clip_id` as the id.

The output folder gets:

- `<id>.mp4` (the input's container when ffmpeg can write it, else `.mkv`) for every row dubbed;
- `results.jsonl` and `results.csv`: one record per row, in input order — `status` (`ok` or `error`), the output,
  `duration_s` (the dubbed clip) and `speech_s` (its speech), the conclusion that guided it, `seconds` taken, the
  `error` if any, and `skipped` when an earlier run had dubbed it;
- `.dub-batch/`: the records as they are made (`records-<process>.jsonl`, one line per row, synced to disk) and the
  options of the run (`settings.json`).

A re-run in the same folder dubs only the rows not yet done: a row is done when its latest record says `ok` for the
same inputs and its output file is there, as large as recorded. Each output is muxed into a temporary file and
renamed into place once complete, and its record is written after that, so a run killed at any moment (even
`kill -9`) loses at most the rows in flight, and never leaves a half-written file that passes for a finished one.
A bad row (a missing file, an empty line, a line too long for its clip, ...) gets an `error` record naming the row
and the fix; the batch goes on.

Batching: `DeepDubberPipeline.__call__` dubs one video per call (with subtitles, the lines of that video are sampled
together); it takes no list of videos. Rows are therefore batched here through the two stages `__call__` is made of:
`DeepDubberPipeline.plan_dub` for each row (reasoner, video and conclusion encoders, duration predictor), then one
`DeepDubberPipeline.generate_mels` over the lines of up to `batch_size` rows, when their conditions can share a
forward pass (all with a conclusion, or all without). Every line has its own seeded generator, and the sampling
masks the padding, so a row's speech does not depend on the rows it is batched with or the process it lands on: a
batch of one gives what `pipe(video=..., text=..., generator=...)` gives.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
MANIFEST_COLUMNS = ("id", "video", "text", "subtitles", "reference_audio", "reference_text", "speaker", "conclusion")
RESULT_COLUMNS = ("id", "row", "status", "output", "video", "text", "subtitles", "speaker", "duration_s", "speech_s",
                  "conclusion", "seconds", "error", "skipped")  # fmt: skip
STATE_FOLDER = ".dub-batch"
# Separates several voices (or transcripts) in one CSV cell.
CSV_LIST_SEPARATOR = " | "
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _digest(value: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


def _file_stamp(path: str | None) -> Any:
    """Path and size of a file (what the fingerprint of a row sees of it), or the path alone if it is missing."""
    if path is None:
        return None
    return [path, os.path.getsize(path)] if os.path.isfile(path) else [path, None]


@dataclass
class BatchRow:
    """
    One clip to dub, as `load_rows` reads it.

    Args:
        number (`int`):
            Its line in the manifest (its index in a dataset).
        source (`str`):
            Where it comes from, for messages: `"manifest.csv, line 4 (id clip-1f2e3d4c)"`.
        row_id (`str`):
            Its name, unique in the batch: its output is `<row_id>.mp4` (see `output_name`).
        video (`str`):
            The clip's path (for a dataset row, a name only: the clip is written out by `materialize`).
        text, subtitles (`str`, *optional*):
            The line to speak, or the path of an `.srt` file (one of the two).
        reference_audio, reference_text (`str` or `list[str]`, *optional*):
            The voice(s) to clone and their transcripts (a dataset row's voice is written out by `materialize`).
        speaker, conclusion (`str`, *optional*):
            Who speaks; the conclusion that skips the reasoner.
        fingerprint (`str`):
            A hash of the inputs: a record of other inputs with the same id does not make the row done.
        dataset (`datasets.Dataset`, *optional*), dataset_index (`int`, *optional*):
            Where a dataset row's media are.
    """

    number: int
    source: str
    row_id: str
    video: str | None
    text: str | None = None
    subtitles: str | None = None
    reference_audio: Any = None
    reference_text: Any = None
    speaker: str | None = None
    conclusion: str | None = None
    fingerprint: str = ""
    dataset: Any = field(default=None, repr=False)
    dataset_index: int | None = None

    @property
    def output_name(self) -> str:
        from .pipelines.dubbing import AUDIO_CODECS

        extension = os.path.splitext(self.video or "")[1].lower()
        return self.row_id + (extension if extension in AUDIO_CODECS else ".mkv")

    def check(self) -> None:
        """Raise a `ValueError` / `FileNotFoundError` naming this row and the fix, for inputs it cannot be dubbed
        from (what the pipeline itself checks, such as a line too long for its clip, it reports in its own words)."""
        where = self.source
        if self.dataset is None:
            if not self.video:
                raise ValueError(f"{where}: no `video`: give the path of the clip to dub.")
            if not os.path.isfile(self.video):
                raise FileNotFoundError(
                    f"{where}: video {self.video!r} not found: fix the path (relative to the manifest's folder) or "
                    "remove the row."
                )
        if self.text is not None and self.subtitles is not None:
            raise ValueError(f"{where}: give the line in `text` or the timed lines in `subtitles`, not both.")
        if self.subtitles is None and (self.text is None or not self.text.strip()):
            raise ValueError(
                f"{where}: the line to speak (`text`) is empty: give it, or an .srt file in `subtitles`."
            )
        if self.subtitles is not None and not os.path.isfile(self.subtitles):
            raise FileNotFoundError(
                f"{where}: subtitles {self.subtitles!r} not found: fix the path (relative to the manifest's folder)."
            )
        if self.dataset is not None:
            return  # a dataset row's voice comes with its transcript
        if self.reference_audio is not None and self.reference_text is None:
            raise ValueError(f"{where}: `reference_audio` needs its transcript in `reference_text`.")
        if self.reference_audio is None and self.reference_text is not None:
            raise ValueError(f"{where}: `reference_text` was given without `reference_audio`.")
        voices = self.reference_audio if isinstance(self.reference_audio, list) else [self.reference_audio]
        for voice in voices:
            if voice is not None and not os.path.isfile(voice):
                raise FileNotFoundError(
                    f"{where}: reference voice {voice!r} not found: fix the path (relative to the manifest's folder)."
                )

    def materialize(self, work_dir: str) -> dict:
        """The pipeline's inputs of this row, with a dataset row's video and voice written under `work_dir`."""
        inputs = {"video": self.video, "text": self.text, "subtitles": self.subtitles,
                  "reference_audio": self.reference_audio, "reference_text": self.reference_text,
                  "conclusion": self.conclusion}  # fmt: skip
        if self.dataset is None:
            return inputs
        item = self.dataset[self.dataset_index]
        for key, default_extension in (("video", ".mp4"), ("reference_audio", ".wav")):
            media = item.get(key)
            if not media or (key == "reference_audio" and not self.reference_text):
                inputs[key] = None
                continue
            extension = os.path.splitext(media.get("path") or "")[1] or default_extension
            path = os.path.join(work_dir, f"{self.row_id}-{key}{extension}")
            data = media.get("bytes")
            if data is None:
                with open(media["path"], "rb") as handle:
                    data = handle.read()
            with open(path, "wb") as handle:
                handle.write(data)
            inputs[key] = path
        return inputs


# ----------------------------------------------------------------------------------------------------------------
# Reading the input
# ----------------------------------------------------------------------------------------------------------------


def _read_manifest_records(path: str) -> list[tuple[int, dict]]:
    """(line number, raw record) of every row of a CSV or JSONL manifest."""
    name = os.path.basename(path)
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise ValueError(f"manifest {path!r} is empty: its first line names the columns (video,text,...).")
            unknown = [c for c in reader.fieldnames if c not in MANIFEST_COLUMNS]
            if unknown:
                raise ValueError(
                    f"manifest {path!r} has unknown column(s) {unknown}: the columns are {list(MANIFEST_COLUMNS)}. "
                    "Rename or remove them."
                )
            records = []
            for record in reader:
                if None in record:
                    raise ValueError(
                        f"{name}, line {reader.line_num}: more cells than columns: quote cells that hold commas."
                    )
                cells = {k: (v if v is None or v.strip() else None) for k, v in record.items()}
                for key in ("reference_audio", "reference_text"):
                    if cells.get(key) and CSV_LIST_SEPARATOR.strip() in cells[key]:
                        cells[key] = [part.strip() for part in cells[key].split(CSV_LIST_SEPARATOR.strip())]
                if any(v is not None for v in cells.values()):
                    records.append((reader.line_num, cells))
            return records
    if path.endswith(".jsonl"):
        records = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{name}, line {number}: not a JSON object ({error.msg}): fix the line.") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{name}, line {number}: a row is a JSON object like {{\"video\": ..., ...}}.")
                unknown = [c for c in record if c not in MANIFEST_COLUMNS]
                if unknown:
                    raise ValueError(
                        f"{name}, line {number}: unknown key(s) {unknown}: the keys are {list(MANIFEST_COLUMNS)}."
                    )
                records.append((number, record))
        return records
    raise ValueError(f"manifest {path!r} must be a .csv or a .jsonl file.")


def read_manifest(path: str | os.PathLike) -> list[BatchRow]:
    """The rows of a CSV or JSONL manifest (columns in the module docstring), media paths resolved against its
    folder. A structural problem (an unknown column, a bad line, a bad or repeated id) raises a `ValueError` naming
    the file, the line and the fix; a row that cannot be dubbed (a missing file, an empty line) is left for the run
    to report."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"manifest {path!r} not found.")
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)

    def resolve(value):
        if value is None:
            return None
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if not isinstance(value, str):
            raise ValueError(f"a path must be a string, got {value!r}")
        return os.path.normpath(os.path.join(folder, os.path.expanduser(value)))

    rows, seen = [], {}
    for number, record in _read_manifest_records(path):
        source = f"{name}, line {number}"
        for key in ("id", "video", "text", "subtitles", "speaker", "conclusion"):
            if record.get(key) is not None and not isinstance(record[key], str):
                raise ValueError(f"{source}: `{key}` must be a string, got {record[key]!r}.")
        for key in ("reference_audio", "reference_text"):
            value = record.get(key)
            if value is not None and not isinstance(value, str) and not (
                isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            ):
                raise ValueError(f"{source}: `{key}` must be a string or a list of strings, got {value!r}.")
        try:
            video, subtitles = resolve(record.get("video")), resolve(record.get("subtitles"))
            reference_audio = resolve(record.get("reference_audio"))
        except ValueError as error:
            raise ValueError(f"{source}: {error}.") from None
        row_id = record.get("id")
        if row_id is not None and not _ID.match(row_id):
            raise ValueError(
                f"{source}: id {row_id!r} cannot name a file: use letters, digits, '.', '_' and '-' (at most 128)."
            )
        if row_id is None:
            stem = os.path.splitext(os.path.basename(record.get("video") or "row"))[0]
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:64] or "row"
            row_id = f"{stem}-{_digest([record.get('video'), record.get('text'), record.get('subtitles')], 8)}"
        if row_id in seen:
            raise ValueError(
                f"{source}: id {row_id!r} is already the id of line {seen[row_id]}"
                + ("" if record.get("id") else " (the same video with the same line)")
                + ": give each row its own `id`, or remove the repeated row."
            )
        seen[row_id] = number
        rows.append(BatchRow(number=number, source=f"{source} (id {row_id})", row_id=row_id, video=video,
                             text=record.get("text"), subtitles=subtitles, reference_audio=reference_audio,
                             reference_text=record.get("reference_text"), speaker=record.get("speaker"),
                             conclusion=record.get("conclusion")))  # fmt: skip
    if not rows:
        raise ValueError(f"manifest {path!r} has no rows: add one line per clip to dub.")

    # A speaker's voice, given once, for every row of that speaker that has none of its own.
    voices = {}
    for row in rows:
        if row.speaker is not None and row.reference_audio is not None:
            voices.setdefault(row.speaker, (row.reference_audio, row.reference_text))
    for row in rows:
        if row.speaker in voices and row.reference_audio is None and row.reference_text is None:
            row.reference_audio, row.reference_text = voices[row.speaker]
        row.fingerprint = _digest([
            _file_stamp(row.video), row.text, _file_stamp(row.subtitles),
            [_file_stamp(v) for v in row.reference_audio] if isinstance(row.reference_audio, list)
            else _file_stamp(row.reference_audio),
            row.reference_text, row.speaker, row.conclusion,
        ])  # fmt: skip
    return rows


def load_dataset_rows(path: str, dataset_config: str | None = None, split: str = "test") -> list[BatchRow]:
    """The rows of a `datasets` dataset in the corpus's schema (`video`, `transcript`, optional `clip_id`,
    `reference_audio`, `reference_text`, `speaker_id`): a `save_to_disk` folder, or anything `load_dataset` loads."""
    import datasets

    if os.path.isfile(os.path.join(path, "dataset_info.json")) or os.path.isfile(os.path.join(path, "state.json")) \
            or os.path.isfile(os.path.join(path, "dataset_dict.json")):
        dataset = datasets.load_from_disk(path)
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise ValueError(f"dataset {path!r} has no split {split!r}: pick one of {list(dataset)} with --split.")
            dataset = dataset[split]
    else:
        try:
            dataset = datasets.load_dataset(path, dataset_config, split=split)
        except ValueError as error:
            raise ValueError(f"could not load the {split!r} split of dataset {path!r} ({error}): check --split and "
                             "--dataset-config.") from error  # fmt: skip
    missing = [c for c in ("video", "transcript") if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"dataset {path!r} has no column(s) {missing}: dub-batch reads the corpus's schema (video, transcript, "
            f"reference_audio, reference_text, clip_id); it has {dataset.column_names}. A folder of clips needs a "
            f"manifest: {' or '.join(MANIFEST_NAMES)} beside them (see `deepdubber_hf.batch`)."
        )
    media = dataset.select_columns([c for c in ("video", "reference_audio") if c in dataset.column_names])
    media = media.cast_column("video", datasets.Video(decode=False))
    if "reference_audio" in media.column_names:
        media = media.cast_column("reference_audio", datasets.Audio(decode=False))
    text_columns = [c for c in ("clip_id", "transcript", "reference_text", "speaker_id") if c in dataset.column_names]
    table = dataset.select_columns(text_columns).to_dict()
    label = f"dataset {os.path.basename(os.path.normpath(path))}" + (f"/{dataset_config}" if dataset_config else "")
    rows, seen = [], {}
    has_reference = "reference_audio" in media.column_names and "reference_text" in table
    for index in range(len(dataset)):
        clip_id = table["clip_id"][index] if "clip_id" in table else None
        row_id = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id or f"row{index:06d}").lstrip(".")[:128] or f"row{index:06d}"
        source = f"{label} ({split}), row {index} (id {row_id})"
        if row_id in seen:
            raise ValueError(f"{source}: clip_id {clip_id!r} repeats row {seen[row_id]}: clip ids must be unique.")
        seen[row_id] = index
        reference_text = table["reference_text"][index] if has_reference else None
        row = BatchRow(number=index, source=source, row_id=row_id, video=f"{row_id}.mp4",
                       text=table["transcript"][index], reference_text=reference_text,
                       speaker=table["speaker_id"][index] if "speaker_id" in table else None, dataset=media,
                       dataset_index=index)  # fmt: skip
        row.fingerprint = _digest([os.path.abspath(path), dataset_config, split, clip_id, row.text, reference_text])
        rows.append(row)
    if not rows:
        raise ValueError(f"dataset {path!r} ({split}) has no rows.")
    return rows


def load_rows(input_path: str | os.PathLike, dataset_config: str | None = None, split: str = "test") -> list:
    """The rows of `input_path`: a manifest file, a folder holding `manifest.csv` or `manifest.jsonl`, or a
    dataset in the corpus's schema.

    Example:

    ```py
    >>> from deepdubber_hf.batch import load_rows
    >>> rows = load_rows("clips/")                   # clips/manifest.csv
    >>> rows[0].row_id, rows[0].video, rows[0].text
    ```
    """
    input_path = os.fspath(input_path)
    if os.path.isfile(input_path):
        return read_manifest(input_path)
    if os.path.isdir(input_path):
        manifests = [n for n in MANIFEST_NAMES if os.path.isfile(os.path.join(input_path, n))]
        if len(manifests) > 1:
            raise ValueError(f"{input_path!r} holds both {' and '.join(manifests)}: keep one, or pass the file.")
        if manifests:
            return read_manifest(os.path.join(input_path, manifests[0]))
    elif input_path.endswith((".csv", ".jsonl")) or input_path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{input_path!r} not found: pass a manifest, a folder with one, or a dataset.")
    return load_dataset_rows(input_path, dataset_config, split)


def rows_text(rows: list[BatchRow]) -> str:
    """Every character the rows speak or transcribe (what the vocabulary of a tiny untrained pipeline needs)."""
    parts = []
    for row in rows:
        parts += [row.text or "", row.conclusion or ""]
        texts = row.reference_text if isinstance(row.reference_text, list) else [row.reference_text or ""]
        parts += texts
        if row.subtitles and os.path.isfile(row.subtitles):
            with open(row.subtitles, encoding="utf-8-sig", errors="replace") as handle:
                parts.append(handle.read())
    return "".join(sorted(set("".join(parts)) - set("\r\n\t")))


# ----------------------------------------------------------------------------------------------------------------
# Records: appended as rows finish, merged at the end
# ----------------------------------------------------------------------------------------------------------------


class RecordLog:
    """An append-only JSONL file of result records: one line per row, flushed and synced to disk before the next
    row starts, so that a kill loses at most the row in flight. A line cut short by a kill is skipped by
    `read_records` and closed with a newline here before anything else is appended."""

    def __init__(self, path: str):
        self.path = path
        self.handle = open(path, "a+b")
        self.handle.seek(0, os.SEEK_END)
        if self.handle.tell() > 0:
            self.handle.seek(-1, os.SEEK_END)
            if self.handle.read(1) != b"\n":
                self.handle.write(b"\n")

    def append(self, record: dict) -> None:
        self.handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def read_records(state_dir: str) -> dict[str, dict]:
    """The latest record of every row id found in the record files of `state_dir` (all processes, all runs)."""
    latest = {}
    if not os.path.isdir(state_dir):
        return latest
    for name in sorted(os.listdir(state_dir)):
        if not (name.startswith("records-") and name.endswith(".jsonl")):
            continue
        with open(os.path.join(state_dir, name), encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of a killed run, cut short
                if not isinstance(record, dict) or "id" not in record:
                    continue
                previous = latest.get(record["id"])
                if previous is None or record.get("finished_at", 0) >= previous.get("finished_at", 0):
                    latest[record["id"]] = record
    return latest


def is_done(row: BatchRow, record: dict | None, output_dir: str) -> bool:
    """Whether `row` was dubbed by an earlier run: its latest record says `ok` for the same inputs, and its output
    is there with the recorded size (a file left by anything else does not count)."""
    if not record or record.get("status") != "ok" or record.get("fingerprint") != row.fingerprint:
        return False
    path = os.path.join(output_dir, record.get("output") or "")
    return os.path.isfile(path) and os.path.getsize(path) == record.get("output_bytes")


def _write_atomically(path: str, write: Callable) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_results(output_dir: str, rows: list[BatchRow], records: dict[str, dict], skipped: set) -> list[dict]:
    """`results.jsonl` and `results.csv`: one record per row in input order (a row without any record, which only
    a run stopped early leaves, is `pending`). Each file is written beside its place and renamed into it."""
    results = []
    for row in rows:
        record = records.get(row.row_id)
        if record is None or record.get("fingerprint") != row.fingerprint:
            record = {"id": row.row_id, "row": row.number, "status": "pending", "video": row.video,
                      "text": row.text, "subtitles": row.subtitles, "speaker": row.speaker}  # fmt: skip
        results.append({**record, "skipped": row.row_id in skipped})

    def write_jsonl(handle):
        for result in results:
            handle.write(json.dumps(result, ensure_ascii=False) + "\n")

    def write_csv(handle):
        writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for result in results:
            writer.writerow({k: "" if result.get(k) is None else result.get(k) for k in RESULT_COLUMNS})

    _write_atomically(os.path.join(output_dir, "results.jsonl"), write_jsonl)
    _write_atomically(os.path.join(output_dir, "results.csv"), write_csv)
    return results


# ----------------------------------------------------------------------------------------------------------------
# Dubbing
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class BatchOptions:
    """How every row is dubbed.

    Args:
        num_inference_steps (`int`, *optional*, defaults to 32):
            Sampling steps.
        seed (`int`, *optional*, defaults to 0):
            With the row id and the line's index, the seed of each line's noise.
        batch_size (`int`, *optional*, defaults to 4):
            Rows planned together, and lines sampled in one forward pass.
        use_video, use_conclusion, use_duration_predictor (`bool`, *optional*, default to `True`):
            The ablations of `DeepDubberPipeline.__call__`.
    """

    num_inference_steps: int = 32
    seed: int = 0
    batch_size: int = 4
    use_video: bool = True
    use_conclusion: bool = True
    use_duration_predictor: bool = True

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.num_inference_steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.num_inference_steps}.")

    def settings(self) -> dict:
        """What changes the output (not `batch_size`): a re-run must use the same to resume a folder."""
        values = asdict(self)
        values.pop("batch_size")
        return values


@dataclass
class DubbedRow:
    """
    The outcome of one row (from `dub_rows`).

    Args:
        row ([`BatchRow`]):
            The row.
        inputs (`dict`, *optional*):
            The pipeline's inputs (`video`, `text`, ...), media as paths.
        track (`np.ndarray`, *optional*):
            The dubbed track, as long as the clip, at `sampling_rate`; `None` if the row failed.
        sampling_rate (`int`), clip_s (`float`):
            Of the track; the clip's length in seconds.
        segments (`list[dict]`):
            Per line its `text`, `speaker`, `onset_s` and `offset_s` in the clip.
        conclusion (`str`, *optional*):
            The conclusion that guided the speech, as text.
        seconds (`float`):
            Time spent on the row (its share of a batch's sampling included).
        error (`str`, *optional*):
            What went wrong, naming the row.
    """

    row: BatchRow
    inputs: dict | None = None
    track: Any = None
    sampling_rate: int = 0
    clip_s: float = 0.0
    segments: list = field(default_factory=list)
    conclusion: str | None = None
    seconds: float = 0.0
    error: str | None = None


def line_seed(seed: int, row_id: str, line: int) -> int:
    """The seed of one line's noise: the same whatever the batch and the process."""
    return int(_digest([seed, row_id, line], 15), 16)


def _describe(row: BatchRow, error: BaseException) -> str:
    """The error of a row, naming the row once."""
    text = str(error) or type(error).__name__
    if not isinstance(error, (ValueError, FileNotFoundError)):
        text = f"{type(error).__name__}: {text}"
    return text if text.startswith(row.source) else f"{row.source}: {text}"


def _sampling_defaults() -> dict:
    """The sampling arguments of `DeepDubberPipeline.__call__` at their defaults (one source for both paths)."""
    from .pipelines.pipeline_deepdubber import DeepDubberPipeline

    defaults = {k: p.default for k, p in inspect.signature(DeepDubberPipeline.__call__).parameters.items()}
    scales = tuple(defaults[f"{name}_guidance_scale"] for name in ("video", "conclusion", "text"))
    return {"speed": defaults["speed"], "guidance_scale": defaults["guidance_scale"], "scales": scales,
            "sway_sampling_coef": defaults["sway_sampling_coef"], "latents": None, "callback_on_step_end": None,
            "callback_on_step_end_tensor_inputs": ["latents"]}  # fmt: skip


def _stack_conditions(conditions: list):
    """One `(b, m, dc)` condition and its `(b, m)` mask from the lines' `(1, m_i, dc)` ones, padded (and masked)."""
    import torch
    import torch.nn.functional as F

    if conditions[0] is None:
        return None
    length = max(c[0].shape[1] for c in conditions)
    embeds = torch.cat([F.pad(c[0], (0, 0, 0, length - c[0].shape[1])) for c in conditions])
    mask = torch.cat([F.pad(c[1].long(), (0, length - c[1].shape[1])) for c in conditions]).bool()
    return embeds, mask


def _sample_lines(pipe, lines: list[dict], sampling: dict) -> list:
    """The mels of `lines` (each a dict of one line's inputs) in one `generate_mels` call."""
    import torch

    features = [line["video_features"] for line in lines]
    return pipe.generate_mels(
        [line["text"] for line in lines], [line["prompt"] for line in lines],
        [line["reference_text"] for line in lines], [line["total"] for line in lines],
        {**sampling, "generator": [torch.Generator().manual_seed(line["seed"]) for line in lines]},
        video_features=None if features[0] is None else features,
        condition=_stack_conditions([line["condition"] for line in lines]),
    )  # fmt: skip


def dub_rows(pipe, rows: list[BatchRow], options: BatchOptions, work_dir: str) -> Iterator[DubbedRow]:
    """Dub `rows`, `options.batch_size` at a time, and yield a `DubbedRow` per row in order (a failed row carries
    its error instead of a track). Dataset rows' media are written under `work_dir`.

    Example:

    ```py
    >>> from deepdubber_hf.batch import BatchOptions, dub_rows, load_rows
    >>> for dubbed in dub_rows(pipe, load_rows("clips/"), BatchOptions(num_inference_steps=16), "work/"):
    ...     print(dubbed.row.row_id, dubbed.error or f"{len(dubbed.track) / dubbed.sampling_rate:.2f} s")
    ```
    """
    for start in range(0, len(rows), options.batch_size):
        yield from _dub_group(pipe, rows[start : start + options.batch_size], options, work_dir)


def _dub_group(pipe, rows: list[BatchRow], options: BatchOptions, work_dir: str) -> list[DubbedRow]:
    import torch

    from .pipelines.dubbing import assemble_track

    sampling = {**_sampling_defaults(), "num_inference_steps": options.num_inference_steps}
    fps = pipe.frames_per_second
    outcomes, plans, lines = [], {}, []
    with torch.no_grad():
        # 1. Plan each row alone: a bad row fails here, by itself.
        for position, row in enumerate(rows):
            started = time.perf_counter()
            outcome = DubbedRow(row)
            outcomes.append(outcome)
            try:
                row.check()
                outcome.inputs = row.materialize(work_dir)
                inputs = outcome.inputs
                plans[position] = plan = pipe.plan_dub(
                    inputs["video"], inputs["text"], inputs["subtitles"], inputs["reference_audio"],
                    inputs["reference_text"], inputs["conclusion"], None, options.use_video, options.use_conclusion,
                    options.use_duration_predictor, sampling["speed"],
                )  # fmt: skip
            except Exception as error:  # one bad row must not stop the batch: it is reported in its record
                outcome.error = _describe(row, error)
                outcome.seconds = time.perf_counter() - started
                continue
            # 2. Its lines, sized as the pipeline's own call sizes them.
            totals, video_features = plan.line_frames(fps)
            for index, (segment, prompt) in enumerate(zip(plan.segments, plan.prompts)):
                lines.append({
                    "position": position, "index": index, "text": segment.text, "prompt": prompt,
                    "reference_text": plan.reference_texts[index], "total": totals[index],
                    "seed": line_seed(options.seed, row.row_id, index), "condition": plan.condition,
                    "video_features": video_features[index],
                })  # fmt: skip
            outcome.seconds = time.perf_counter() - started

        # 3. Sample lines that can share a forward pass together, `batch_size` at a time.
        mels = {}
        groups = {}
        for line in lines:
            groups.setdefault((line["video_features"] is None, line["condition"] is None), []).append(line)
        for group in groups.values():
            for start in range(0, len(group), options.batch_size):
                chunk = group[start : start + options.batch_size]
                started = time.perf_counter()
                try:
                    results = list(zip(chunk, _sample_lines(pipe, chunk, sampling)))
                except Exception:  # find the row at fault: sample each row's lines alone
                    logger.warning("a batch of %d lines failed; sampling its rows one by one", len(chunk))
                    results = []
                    for position in dict.fromkeys(line["position"] for line in chunk):
                        own = [line for line in chunk if line["position"] == position]
                        try:
                            results += list(zip(own, _sample_lines(pipe, own, sampling)))
                        except Exception as error:
                            outcomes[position].error = _describe(rows[position], error)
                elapsed = time.perf_counter() - started
                for line, mel in results:
                    mels[(line["position"], line["index"])] = mel
                    outcomes[line["position"]].seconds += elapsed / len(chunk)

        # 4. Vocode each row and lay its lines on one track as long as its clip.
        for position, plan in plans.items():
            outcome = outcomes[position]
            if outcome.error is not None:
                continue
            started = time.perf_counter()
            try:
                row_mels = [mels[(position, index)] for index in range(len(plan.segments))]
                waves = pipe.vocode(row_mels, plan.rms, "np")
                outcome.track = assemble_track(list(zip(plan.onsets_s, waves)), plan.clip_s, pipe.sampling_rate)
            except Exception as error:
                outcome.error = _describe(rows[position], error)
                continue
            outcome.sampling_rate, outcome.clip_s = pipe.sampling_rate, plan.clip_s
            outcome.conclusion = plan.conclusion.to_text() if plan.conclusion is not None else None
            outcome.segments = [
                {"text": s.text, "speaker": s.speaker, "onset_s": round(onset, 3),
                 "offset_s": round(onset + m.shape[0] / fps, 3)}
                for s, onset, m in zip(plan.segments, plan.onsets_s, row_mels)
            ]  # fmt: skip
            outcome.seconds += time.perf_counter() - started
    return outcomes


def _check_settings(state_dir: str, settings: dict, output_dir: str) -> None:
    path = os.path.join(state_dir, "settings.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as handle:
        saved = json.load(handle)
    changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
    if changed:
        described = ", ".join(f"{k} {old!r} then, {new!r} now" for k, (old, new) in changed.items())
        raise ValueError(
            f"{output_dir!r} holds a batch dubbed with other options ({described}): re-run with the same options "
            "to resume it, or give another OUTPUT_DIR."
        )


def _is_leftover(name: str) -> bool:
    # The pipeline's partial muxes (`.partial-*`), and this module's files being written (`_write_atomically`).
    return name.startswith(".partial-") or (name.startswith(("results.", "settings.")) and ".tmp-" in name)


def _remove_leftovers(folder: str, everything: bool = False) -> None:
    """What a killed run may have left in `folder` (or, with `everything`, all its files)."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and (everything or _is_leftover(name)):
            os.remove(path)


def run_batch(pipe, rows: list[BatchRow], output_dir: str | os.PathLike, options: BatchOptions | None = None,
              model: str | None = None, state=None, progress: bool = True) -> dict:
    """Dub every row of `rows` not yet done into `output_dir`, this process's share of them when several run
    (`accelerate launch`), and write the results manifest.

    Args:
        pipe ([`DeepDubberPipeline`]):
            A dubbing pipeline (with the stage-2.2 components), on this process's device.
        rows (`list[BatchRow]`):
            From `load_rows`; every process must be given the same.
        output_dir (`str` or `os.PathLike`):
            Created if needed; a folder of an earlier run of the same rows is resumed.
        options ([`BatchOptions`], *optional*):
            Steps, seed, batch size, ablations.
        model (`str`, *optional*):
            The model's name or path, kept with the options: a folder is resumed only with the same.
        state ([`~accelerate.PartialState`], *optional*):
            The processes sharing the rows (one process without `accelerate launch`).
        progress (`bool`, *optional*, defaults to `True`):
            A progress bar on the main process.

    Returns:
        `dict`: `ok`, `error` and `skipped` counts over all rows, and the `results` path.

    Example:

    ```py
    >>> from accelerate import PartialState
    >>> from deepdubber_hf import DeepDubberPipeline
    >>> from deepdubber_hf.batch import BatchOptions, load_rows, run_batch
    >>> state = PartialState()
    >>> pipe = DeepDubberPipeline.from_pretrained("runs/dubber").to(state.device)
    >>> run_batch(pipe, load_rows("clips/"), "dubbed/", BatchOptions(num_inference_steps=16), "runs/dubber", state)
    {'ok': 5, 'error': 1, 'skipped': 0, 'results': 'dubbed/results.jsonl'}
    ```
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from .pipelines.dubbing import mux_audio_into_video

    options = options or BatchOptions()
    state = state or PartialState()
    output_dir = os.fspath(output_dir)
    state_dir = os.path.join(output_dir, STATE_FOLDER)
    work_dir = os.path.join(state_dir, f"work-{state.process_index}")
    settings = {"model": model, **options.settings()}
    if os.path.isdir(state_dir):
        _check_settings(state_dir, settings, output_dir)  # in every process, so that all stop alike
    if state.is_main_process:
        os.makedirs(state_dir, exist_ok=True)
        _remove_leftovers(output_dir)
        _remove_leftovers(state_dir)
        if not os.path.isfile(os.path.join(state_dir, "settings.json")):
            _write_atomically(os.path.join(state_dir, "settings.json"), lambda h: json.dump(settings, h, indent=2))
    state.wait_for_everyone()
    os.makedirs(work_dir, exist_ok=True)
    _remove_leftovers(work_dir, everything=True)  # each process its own

    # Every process reads the same records before any writes one, so that all agree on what is left to do.
    records = read_records(state_dir)
    done = {row.row_id for row in rows if is_done(row, records.get(row.row_id), output_dir)}
    pending = [row for row in rows if row.row_id not in done]
    state.wait_for_everyone()
    if state.is_main_process and done:
        logger.info("%d of %d rows were dubbed by an earlier run: skipping them", len(done), len(rows))

    log = RecordLog(os.path.join(state_dir, f"records-{state.process_index}.jsonl"))
    try:
        with state.split_between_processes(pending) as share:
            # The main process's share: the others report through their record files.
            shown = progress and state.is_main_process
            bar = tqdm(total=len(share), unit="clip", desc="dub-batch", disable=not shown)
            for dubbed in dub_rows(pipe, share, options, work_dir):
                record = _finish(dubbed, output_dir, mux_audio_into_video)
                record["process"] = state.process_index
                log.append(record)
                bar.update()
                bar.set_postfix_str(f"{record['id']}: {record['status']}", refresh=False)
            bar.close()
    finally:
        log.close()
    state.wait_for_everyone()
    results_path = os.path.join(output_dir, "results.jsonl")
    if state.is_main_process:
        write_results(output_dir, rows, read_records(state_dir), done)
    state.wait_for_everyone()
    with open(results_path, encoding="utf-8") as handle:
        results = [json.loads(line) for line in handle if line.strip()]
    return {"ok": sum(r["status"] == "ok" for r in results), "error": sum(r["status"] == "error" for r in results),
            "skipped": sum(bool(r.get("skipped")) for r in results), "results": results_path}  # fmt: skip


def _finish(dubbed: DubbedRow, output_dir: str, mux) -> dict:
    """Write a dubbed row's clip (a temporary file renamed into place) and return its record."""
    row = dubbed.row
    record = {"id": row.row_id, "row": row.number, "status": "error", "output": None,
              "video": row.video if row.dataset is None else None, "text": row.text, "subtitles": row.subtitles,
              "speaker": row.speaker, "duration_s": None, "speech_s": None, "conclusion": dubbed.conclusion,
              "seconds": None, "error": dubbed.error, "segments": dubbed.segments, "fingerprint": row.fingerprint,
              "output_bytes": None}  # fmt: skip
    started = time.perf_counter()
    if dubbed.error is None:
        path = os.path.join(output_dir, row.output_name)
        try:
            mux(dubbed.inputs["video"], dubbed.track, dubbed.sampling_rate, path)
            record.update(status="ok", output=row.output_name, output_bytes=os.path.getsize(path),
                          duration_s=round(dubbed.clip_s, 3),
                          speech_s=round(sum(s["offset_s"] - s["onset_s"] for s in dubbed.segments), 3))  # fmt: skip
        except Exception as error:
            record["error"] = _describe(row, error)
    if row.dataset is not None and dubbed.inputs:  # the media written for this row
        for key in ("video", "reference_audio"):
            if dubbed.inputs.get(key) and os.path.isfile(dubbed.inputs[key]):
                os.remove(dubbed.inputs[key])
    record["seconds"] = round(dubbed.seconds + time.perf_counter() - started, 3)
    record["finished_at"] = time.time()
    if record["error"]:
        logger.warning(record["error"])
    return record


__all__ = [
    "BatchOptions",
    "BatchRow",
    "DubbedRow",
    "RecordLog",
    "dub_rows",
    "is_done",
    "line_seed",
    "load_dataset_rows",
    "load_rows",
    "read_manifest",
    "read_records",
    "rows_text",
    "run_batch",
    "write_results",
]
