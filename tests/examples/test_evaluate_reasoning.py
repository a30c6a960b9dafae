"""examples/evaluate_reasoning.py and `deepdubber reason` on a tiny reasoner and corpus."""

import json
import os
import subprocess
import sys

import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_evaluate_reasoning_writes_tables_and_plots(tiny_corpus, tiny_reasoner, tmp_path):
    out = str(tmp_path / "eval")
    command = [sys.executable, os.path.join(ROOT, "examples", "evaluate_reasoning.py"), "--model", tiny_reasoner,
               "--dataset", tiny_corpus, "--dataset_config_name", "level1", "level2", "--split", "train",
               "--max_new_tokens", "12", "--output_dir", out, "--label", "tiny"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "metrics.json")) as handle:
        metrics = json.load(handle)
    assert set(metrics["results"]) == {"level1", "level2"}
    level1 = metrics["results"]["level1"]
    assert level1["num_clips"] == 5 and 0.0 <= level1["accuracy"] <= 1.0
    assert set(level1["recall"]) == {"dialogue", "monologue", "narration"}
    with open(os.path.join(out, "level1_predictions.jsonl")) as handle:
        rows = [json.loads(line) for line in handle]
    assert len(rows) == 5 and all("response" in row and "reference" in row for row in rows)
    table = open(os.path.join(out, "metrics.md")).read()
    assert "tiny (level1)" in table and "tiny (level2)" in table
    for name in ("level1_confusion.png", "level2_confusion.png"):
        with open(os.path.join(out, name), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_reason_command_prints_reasoning_and_conclusion(tiny_corpus, tiny_reasoner, tmp_path):
    row = datasets.load_dataset(tiny_corpus, "level1", split="test").cast_column(
        "video", datasets.Video(decode=False)
    )[0]
    video = tmp_path / "clip.mp4"
    video.write_bytes(row["video"]["bytes"])
    deepdubber = os.path.join(os.path.dirname(sys.executable), "deepdubber")
    result = subprocess.run([deepdubber, "reason", str(video), "--model", tiny_reasoner, "--json",
                             "--max-new-tokens", "8"], capture_output=True, text=True, env=ENV)  # fmt: skip
    payload = json.loads(result.stdout)
    assert payload["video"] == str(video) and isinstance(payload["reasoning"], str)
    # An untrained reasoner gives no readable conclusion: exit code 1 and the failure named.
    assert (result.returncode, "failure" in payload) in ((1, True), (0, False))

    missing = subprocess.run([deepdubber, "reason", str(tmp_path / "nope.mp4"), "--model", tiny_reasoner],
                             capture_output=True, text=True, env=ENV)  # fmt: skip
    assert missing.returncode == 2 and "nope.mp4" in missing.stderr
