"""`deepdubber dub-batch` (deepdubber_hf/batch.py): a 6-row manifest with a bad row on two CPU processes, killed with
SIGKILL midway and run again; rows batched together dubbed as the pipeline's own call dubs each; manifest mistakes;
a dataset in the corpus's schema."""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deepdubber_hf.batch import BatchOptions, dub_rows, line_seed, load_rows, read_records, run_batch

REPO = Path(__file__).resolve().parents[1]
CPU_CONFIG = REPO / "configs" / "accelerate" / "cpu_2proc.yaml"
CONCLUSION = "scene type: monologue; speakers: 1; gender: female; age: young; emotion: happy"
GOOD_ROWS = 5


@pytest.fixture(scope="module")
def media(clip, tmp_path_factory):
    """Two generated clips (4.4 s and 3.36 s) and a voice recorded beside the first."""
    from deepdubber_hf.data.corpus import generate_clip

    root = tmp_path_factory.mktemp("media")
    shutil.copy(clip[0], root / "a.mp4")
    (root / "voice.wav").write_bytes(clip[1]["reference_audio"]["bytes"])
    other = generate_clip("l1-batch", level=1, seed=5)
    (root / "b.mp4").write_bytes(other["video"]["bytes"])
    return root, clip[1]["reference_text"]


def write_manifest(folder: Path, media) -> Path:
    """Six rows: five good ones (a voice shared by speaker, subtitles, a given conclusion) and one whose video is
    missing (line 7)."""
    root, voice_text = media
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a.mp4", "b.mp4", "voice.wav"):
        shutil.copy(root / name, folder / name)
    (folder / "lines.srt").write_text("1\n00:00:00,300 --> 00:00:01,800\nWhere is the map?\n\n"
                                      "2\n00:00:02,000 --> 00:00:04,000\nOn the table, I think.\n")  # fmt: skip
    rows = [
        {"video": "a.mp4", "text": "Where did you put the map?", "reference_audio": "voice.wav",
         "reference_text": voice_text, "speaker": "ann"},
        {"video": "b.mp4", "text": "On the table.", "speaker": "ann"},
        {"video": "a.mp4", "subtitles": "lines.srt"},
        {"video": "b.mp4", "text": "Good morning to you.", "conclusion": CONCLUSION, "id": "morning"},
        {"video": "a.mp4", "text": "Let us go home now."},
        {"video": "missing.mp4", "text": "This clip is not there."},
    ]  # fmt: skip
    with open(folder / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "video", "text", "subtitles", "reference_audio",
                                                    "reference_text", "speaker", "conclusion"])  # fmt: skip
        writer.writeheader()
        writer.writerows(rows)
    return folder


def launch(input_dir, output_dir, *extra, log=None, start=False):
    """`accelerate launch` of two CPU processes of `python -m deepdubber_hf.cli dub-batch`, as a user runs it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_CONFIG),
               "--main_process_port", str(port), "-m", "deepdubber_hf.cli", "dub-batch", str(input_dir),
               str(output_dir), "--steps", "2", *extra]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ACCELERATE_USE_CPU": "1",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    if start:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def results(output_dir):
    with open(Path(output_dir) / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def audio_seconds(path):
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=duration",
                            "-of", "default=nw=1:nk=1", str(path)], capture_output=True, text=True, check=True)
    return float(probe.stdout)


def ok_records(output_dir):
    """Every `ok` line of the per-process record files (several for a row means it was dubbed several times)."""
    found = []
    for path in (Path(output_dir) / ".dub-batch").glob("records-*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("status") == "ok":
                found.append(record["id"])
    return found


def kill_tree(process):
    """SIGKILL to the launcher and every process under it, at once (torchrun starts its workers in sessions of
    their own, out of reach of a process-group kill)."""
    import psutil

    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in tree:
        try:
            os.kill(member.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    psutil.wait_procs(tree, timeout=30)


def test_six_rows_on_two_processes_killed_midway_and_rerun_give_five_clips_and_one_error(media, tmp_path):
    """The issue's test: a 6-row batch with one bad row on 2 CPU processes, killed with SIGKILL once a row is done,
    then run again: 5 dubbed clips, 1 reported error, a complete manifest, and no finished row dubbed twice."""
    folder = write_manifest(tmp_path / "clips", media)
    out = tmp_path / "dubbed"
    rows = {row.row_id: row for row in load_rows(folder)}
    with open(tmp_path / "killed.log", "wb") as log:
        process = launch(folder, out, "--batch-size", "1", log=log, start=True)
        deadline = time.monotonic() + 300
        while not ok_records(out):
            assert process.poll() is None, (tmp_path / "killed.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "no row finished in 300 s"
            time.sleep(0.05)
        kill_tree(process)

    finished = {record_id: out / rows[record_id].output_name for record_id in ok_records(out)}
    assert 1 <= len(finished) < GOOD_ROWS, f"the kill came too late to test a resume: {sorted(finished)}"
    assert not (out / "results.csv").exists()
    mtimes = {record_id: path.stat().st_mtime_ns for record_id, path in finished.items()}
    # A file in the place of an unfinished row's output, as a crash mid-write might leave: it must not pass for done.
    pending = next(row for row_id, row in rows.items() if row_id not in finished and "missing" not in row.video)
    (out / pending.output_name).write_bytes(b"half a video")

    result = launch(folder, out, "--batch-size", "2")
    assert "dubbed 5 of 6 clips" in result.stdout and "1 failed" in result.stdout
    assert "on 2 process(es)" in result.stdout
    table = results(out)
    assert [r["id"] for r in table] == list(rows)  # every row, in manifest order
    assert [r["status"] for r in table] == ["ok"] * GOOD_ROWS + ["error"]
    bad = table[-1]
    assert bad["output"] == "" and "manifest.csv, line 7" in bad["error"] and "missing.mp4" in bad["error"]
    assert "not found" in bad["error"]
    for record in table[:GOOD_ROWS]:
        assert record["error"] == "" and float(record["seconds"]) > 0
        path = out / record["output"]
        assert path.suffix == ".mp4" and abs(audio_seconds(path) - float(record["duration_s"])) < 0.1
        assert 0 < float(record["speech_s"]) <= float(record["duration_s"])
    assert table[3]["id"] == "morning" and table[3]["conclusion"] == CONCLUSION
    detailed = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [len(r["segments"]) for r in detailed[:GOOD_ROWS]] == [1, 1, 2, 1, 1]

    # The rows finished before the kill were kept, not dubbed again; the rest were shared by both processes.
    by_id = {r["id"]: r for r in table}
    for record_id, path in finished.items():
        assert by_id[record_id]["skipped"] == "True" and path.stat().st_mtime_ns == mtimes[record_id]
    assert sum(r["skipped"] == "True" for r in table) == len(finished)
    assert by_id[pending.row_id]["skipped"] == "False" and audio_seconds(out / pending.output_name) > 1
    assert {r["process"] for r in detailed if not r["skipped"]} == {0, 1}
    assert sorted(ok_records(out)) == sorted(r["id"] for r in table[:GOOD_ROWS])  # each good row dubbed once
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [r["output"] for r in table[:GOOD_ROWS]] + [".dub-batch", "results.csv", "results.jsonl"]
    )  # no temporary file left


# ----------------------------------------------------------------------------------------------------------------
# In process
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe():
    """The CLI's tiny untrained dubbing pipeline, with the ControlNet's zero projections given weights so that the
    video and the conclusion reach the speech; one thread, as each process of the launched runs has (several
    threads on two busy cores are many times slower)."""
    import string

    from deepdubber_hf.cli import _tiny_untrained_pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pipe = _tiny_untrained_pipeline(string.ascii_letters + string.digits + string.punctuation + " ", dubbing=True)
    torch.manual_seed(1)
    for layer in (pipe.transformer.proj_out, pipe.transformer.norm_out.linear, pipe.controlnet.control_embed,
                  *pipe.controlnet.controlnet_blocks):  # fmt: skip
        torch.nn.init.normal_(layer.weight, std=0.1)
    pipe.set_progress_bar_config(disable=True)
    yield pipe
    torch.set_num_threads(threads)


def test_rows_batched_together_dub_as_the_pipeline_call_dubs_each(pipe, media, tmp_path):
    rows = load_rows(write_manifest(tmp_path / "clips", media))
    work = tmp_path / "work"
    work.mkdir()
    together = list(dub_rows(pipe, rows, BatchOptions(num_inference_steps=2, batch_size=4), str(work)))
    assert [d.error is None for d in together] == [True] * GOOD_ROWS + [False]
    for row, dubbed in zip(rows[:GOOD_ROWS], together):  # a cloned voice, a borrowed one, subtitles, a conclusion
        count = len(dubbed.segments)
        out = pipe(text=row.text, video=row.video, subtitles=row.subtitles, reference_audio=row.reference_audio,
                   reference_text=row.reference_text, conclusion=row.conclusion, num_inference_steps=2,
                   generator=[torch.Generator().manual_seed(line_seed(0, row.row_id, i)) for i in range(count)])
        np.testing.assert_allclose(dubbed.track, out.audios[0], atol=1e-5, err_msg=row.source)
        assert dubbed.segments == [{**s, "onset_s": round(s["onset_s"], 3), "offset_s": round(s["offset_s"], 3)}
                                   for s in out.segments]  # fmt: skip
    # The rows do not all sound alike: what differs between them reaches the speech.
    assert not np.allclose(together[0].track[: len(together[4].track)], together[4].track, atol=1e-3)
    # The second row has no voice of its own: it speaks with its speaker's (the first row's).
    assert rows[1].reference_audio == rows[0].reference_audio and rows[1].reference_text == rows[0].reference_text


def test_manifest_mistakes_are_named_with_the_file_the_line_and_the_fix(media, tmp_path):
    def error_of(name, text):
        (tmp_path / name).write_text(text)
        with pytest.raises((ValueError, FileNotFoundError)) as caught:
            load_rows(tmp_path / name)
        return str(caught.value)

    message = error_of("manifest.csv", "video,txt\na.mp4,Hello.\n")
    assert "unknown column(s) ['txt']" in message and "'text'" in message
    message = error_of("twice.csv", "video,text\na.mp4,Hello.\nb.mp4,Hi.\na.mp4,Hello.\n")
    assert "twice.csv, line 4" in message and "line 2" in message and "its own `id`" in message
    message = error_of("bad.jsonl", '{"video": "a.mp4", "text": "Hello."}\n{"video": "b.mp4", text}\n')
    assert "bad.jsonl, line 2" in message and "not a JSON object" in message
    message = error_of("ids.jsonl", '{"video": "a.mp4", "text": "Hello.", "id": "../escape"}\n')
    assert "ids.jsonl, line 1" in message and "cannot name a file" in message
    message = error_of("types.jsonl", '{"video": "a.mp4", "text": 3}\n')
    assert "types.jsonl, line 1" in message and "`text` must be a string" in message
    with pytest.raises(FileNotFoundError, match="not found"):
        load_rows(tmp_path / "nowhere.csv")

    # Several voices in a JSONL list (for the named speakers of subtitles), and in one CSV cell.
    (tmp_path / "voices.jsonl").write_text(json.dumps({"video": "a.mp4", "subtitles": "s.srt", "reference_audio": [
        "x.wav", "y.wav"], "reference_text": ["One.", "Two."]}) + "\n")  # fmt: skip
    (row,) = load_rows(tmp_path / "voices.jsonl")
    assert [os.path.basename(p) for p in row.reference_audio] == ["x.wav", "y.wav"] and row.reference_text[1] == "Two."
    (tmp_path / "voices.csv").write_text("video,subtitles,reference_audio,reference_text\na.mp4,s.srt,x.wav | y.wav,"
                                         "One. | Two.\n")  # fmt: skip
    (row,) = load_rows(tmp_path / "voices.csv")
    assert [os.path.basename(p) for p in row.reference_audio] == ["x.wav", "y.wav"] and row.reference_text[1] == "Two."

    # A folder dubbed with other options is not resumed with these.
    rows = load_rows(write_manifest(tmp_path / "clips", media))
    state = tmp_path / "out" / ".dub-batch"
    state.mkdir(parents=True)
    (state / "settings.json").write_text(json.dumps({"model": None, **BatchOptions().settings()}))
    with pytest.raises(ValueError, match="num_inference_steps 32 then, 2 now.*another OUTPUT_DIR"):
        run_batch(None, rows, tmp_path / "out", BatchOptions(num_inference_steps=2))


def test_a_dataset_in_the_corpus_schema_is_dubbed_row_by_row(pipe, tiny_corpus, tmp_path):
    import datasets

    rows = load_rows(tiny_corpus, dataset_config="level1", split="test")
    expected = datasets.load_dataset(tiny_corpus, "level1", split="test")
    assert [row.row_id for row in rows] == list(expected["clip_id"])
    assert rows[0].text == expected[0]["transcript"] and rows[0].reference_text == expected[0]["reference_text"]
    summary = run_batch(pipe, rows, tmp_path / "out", BatchOptions(num_inference_steps=2), progress=False)
    assert summary["ok"] == len(rows) and summary["error"] == 0
    record = read_records(str(tmp_path / "out" / ".dub-batch"))[rows[0].row_id]
    assert abs(audio_seconds(tmp_path / "out" / record["output"]) - expected[0]["duration_s"]) < 0.1
    assert os.listdir(tmp_path / "out" / ".dub-batch" / "work-0") == []  # the media written for the rows are gone
    with pytest.raises(ValueError, match="no split 'validation'|'validation'"):
        load_rows(tiny_corpus, dataset_config="level1", split="validation")
