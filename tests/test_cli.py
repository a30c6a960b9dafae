"""The `deepdubber` command, run as a user would (a subprocess of the installed entry point)."""

import os
import subprocess
import sys
import tempfile

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


def test_speak_without_a_model_warns_that_it_is_untrained(tmp_path):
    result = deepdubber("speak", "Hi.", "--steps", "1", "-o", tmp_path / "out.wav")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.wav").is_file()


def test_bad_reference_is_a_clear_error_and_writes_nothing(tmp_path):
    saved_pipeline(tmp_path / "model")
    result = deepdubber("speak", "Hello there.", "--model", tmp_path / "model", "--reference-audio",
                        tmp_path / "missing.wav", "--reference-text", "Hello.", "-o", tmp_path / "out.wav")
    assert result.returncode == 2
    assert "missing.wav" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "out.wav").exists()
