"""The `deepdubber` command, run as a user would (a subprocess of the installed entry point)."""

import os
import subprocess
import sys
import tempfile

import pytest
import torch

from deepdubber_hf import DeepDubberPipeline, DeepDubberTokenizer, DiTTransformerModel, FlowMatchSwayScheduler
from deepdubber_hf import VocosVocoder
from deepdubber_hf.audio import load_audio

ENV = dict(os.environ, HF_HUB_OFFLINE="1")


def deepdubber(*args):
    return subprocess.run([sys.executable, "-m", "deepdubber_hf.cli", *map(str, args)], capture_output=True,
                          text=True, env=ENV)


def saved_pipeline(folder):
    torch.manual_seed(0)
    tokenizer = DeepDubberTokenizer.from_texts(["Hello there. Where is the map?"], tempfile.mkdtemp())
    transformer = DiTTransformerModel(num_layers=1, num_attention_heads=2, attention_head_dim=16,
                                      vocab_size=tokenizer.vocab_size, text_embed_dim=16, num_text_conv_layers=1)
    vocoder = VocosVocoder(hidden_size=32, intermediate_size=64, num_layers=1)
    DeepDubberPipeline(transformer, FlowMatchSwayScheduler(), vocoder, tokenizer).save_pretrained(folder)


def test_speak_with_a_saved_model_writes_the_requested_length(tmp_path):
    saved_pipeline(tmp_path / "model")
    result = deepdubber("speak", "Hello there.", "--model", tmp_path / "model", "--duration", "1.0", "--steps", "2",
                        "-o", tmp_path / "out.wav")
    assert result.returncode == 0, result.stderr
    audio = load_audio(tmp_path / "out.wav")
    assert abs(audio.shape[0] / 24000 - 1.0) < 0.02
    assert "wrote" in result.stdout


def test_speak_without_a_model_uses_the_embedded_default(tmp_path):
    result = deepdubber("speak", "Hi.", "--steps", "1", "-o", tmp_path / "out.wav")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.wav").is_file()


def test_without_the_default_a_tiny_untrained_pipeline_says_so(tmp_path, monkeypatch, caplog):
    from deepdubber_hf import cli

    monkeypatch.setattr(cli, "DEFAULT_MODEL", tmp_path / "no-default")  # a checkout without the embedded default
    with caplog.at_level("WARNING", logger="deepdubber"):
        pipe = cli.load_pipeline(None, "Hi.", dubbing=True)
    assert "UNTRAINED" in caplog.text and pipe.controlnet is not None and pipe.reasoner is None


def test_bad_reference_is_a_clear_error_and_writes_nothing(tmp_path):
    saved_pipeline(tmp_path / "model")
    result = deepdubber("speak", "Hello there.", "--model", tmp_path / "model", "--reference-audio",
                        tmp_path / "missing.wav", "--reference-text", "Hello.", "-o", tmp_path / "out.wav")
    assert result.returncode == 2
    assert "missing.wav" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "out.wav").exists()


def stream_duration(path, stream):
    result = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries",
                             "stream=duration", "-of", "default=nw=1:nk=1", str(path)], capture_output=True, text=True,
                            check=True)  # fmt: skip
    return float(result.stdout.strip())


def test_dub_turns_a_silent_clip_into_a_playable_video_with_a_full_length_track(clip, tmp_path):
    path, row = clip
    result = deepdubber("dub", path, "--text", "Where did you put the map?", "--steps", 2, "-o", tmp_path / "out.mp4")
    assert result.returncode == 0, result.stderr
    assert "UNTRAINED" not in result.stderr and "wrote" in result.stdout  # checkpoints/deepdubber-tiny
    assert "%" in result.stderr  # the sampling progress bar
    video, audio = stream_duration(tmp_path / "out.mp4", "v:0"), stream_duration(tmp_path / "out.mp4", "a:0")
    assert audio == pytest.approx(video, abs=0.05) and video == pytest.approx(row["duration_s"], abs=0.05)
    decoded = load_audio(tmp_path / "out.mp4")  # the track decodes
    assert decoded.abs().max() > 0


def test_dub_errors_name_the_input_and_write_nothing(clip, tmp_path):
    path, _ = clip
    out = tmp_path / "out.mp4"
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    cases = [
        (("dub", path, "--text", "Hi.", "--model", tmp_path / "no_such_model", "-o", out), "no_such_model"),
        (("dub", notes, "--text", "Hi.", "-o", out), "as a video"),
        (("dub", tmp_path / "missing.mp4", "--text", "Hi.", "-o", out), "not found"),
        (("dub", path, "--text", " ", "-o", out), "empty or whitespace"),
        (("dub", path, "-o", out), "--text"),
        (("dub", path, "--text", "Hi.", "-o", tmp_path / "out.avi"), "end it with one of"),
    ]
    for args, message in cases:
        result = deepdubber(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert sorted(os.listdir(tmp_path)) == ["notes.mp4"], args
