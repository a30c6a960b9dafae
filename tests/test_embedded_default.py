"""The committed default, `checkpoints/deepdubber-tiny`, as a new user meets it: `make dub` (the README's main command)
dubs the shipped sample clip, printing the reasoning, and the folder is what the model card says it is."""

import json
import os
import subprocess

import pytest

from deepdubber_hf.audio import load_audio
from deepdubber_hf.reasoner.cot import TAGS, format_reward

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, "checkpoints", "deepdubber-tiny")


def folder_mb(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names) / 2**20


def stream_seconds(path, stream):
    result = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "stream=duration",
                             "-of", "default=nw=1:nk=1", str(path)], capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


def test_the_default_is_complete_and_small():
    index = json.load(open(os.path.join(DEFAULT, "model_index.json")))
    for part in ("transformer", "controlnet", "duration_predictor", "video_encoder", "condition_encoder", "vocoder",
                 "tokenizer", "reasoner", "reasoner_processor"):
        assert index.get(part) and index[part][0] is not None, part
    assert index["vocoder"][1] == "GriffinLimVocoder" and index["reasoner_mode"] == "cot"
    assert folder_mb(DEFAULT) <= 60
    sample = json.load(open(os.path.join(DEFAULT, "sample", "sample.json")))
    line = open(os.path.join(DEFAULT, "sample", "line.txt"), encoding="utf-8").read().strip()
    assert line == sample["line"] and os.path.getsize(os.path.join(DEFAULT, "sample", "clip.mp4")) > 1000


def test_make_dub_prints_the_reasoning_and_writes_a_dubbed_clip(tmp_path):
    dubbed = tmp_path / "dubbed.mp4"
    result = subprocess.run(["make", "-s", "dub", f"DUBBED={dubbed}"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "UNTRAINED" not in result.stderr
    # The reasoner's chain of thought, printed whole, in its four sections, then the conclusion it steered by.
    printed = result.stdout
    reasoning = printed[printed.index("<SUMMARY>"):printed.index("</CONCLUSION>") + len("</CONCLUSION>")]
    assert all(f"<{tag}>" in reasoning for tag in TAGS) and format_reward(reasoning) == 1.0
    assert "conclusion: scene type:" in printed and f"wrote {dubbed}" in printed
    video, audio = stream_seconds(dubbed, "v:0"), stream_seconds(dubbed, "a:0")
    assert audio == pytest.approx(video, abs=0.05)
    track = load_audio(dubbed)
    assert track.abs().max() > 0.01  # speech, not silence
