"""The pieces of `make tiny-checkpoints` on the tiny generated corpus: the utterance dataset of stage 2.1, the packing
of the stage-2.2 pipeline with the reasoner and a sample clip, and `deepdubber dub` on the packed folder."""

import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(path, *args, expect_ok=True):
    command = [sys.executable, os.path.join(ROOT, path), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if expect_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_utterances_are_cut_one_voice_each_from_the_corpus(tiny_corpus, tmp_path):
    out = tmp_path / "utterances"
    result = run("dataset_scripts/build_tts_dataset.py", tiny_corpus, out, "--pad_s", 0.05)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    utterances = datasets.load_from_disk(str(out))
    assert summary["utterances"] == len(utterances)
    expected = []
    for config in ("level1", "level2"):
        for row in datasets.load_dataset(tiny_corpus, config, split="train"):
            expected += [(turn["text"], turn["end_s"] - turn["start_s"] + 0.1) for turn in row["turns"]]
            expected.append((row["reference_text"], None))
            if row["second_speaker_reference_audio"] is not None:
                expected.append((row["second_speaker_reference_text"], None))
    assert list(utterances["text"]) == [text for text, _ in expected]
    for row, (_, span) in zip(utterances, expected, strict=True):
        samples = row["audio"].get_all_samples()
        assert samples.sample_rate == 24000
        waveform = samples.data.numpy()[0]
        assert row["duration"] == pytest.approx(len(waveform) / 24000, abs=1e-3)
        assert np.sqrt(np.mean(waveform**2)) > 1e-3  # speech, not silence
        if span is not None:  # a turn: its annotated span and the padding, unless the clip's edge cut it
            assert row["duration"] <= span + 0.01
    # One voice, one speaker id: a turn and the reference of the same voice share it.
    assert len(set(utterances["speaker"])) < len(utterances)
    again = run("dataset_scripts/build_tts_dataset.py", tiny_corpus, out, expect_ok=False)
    assert again.returncode != 0 and "exists already" in again.stderr


@pytest.fixture(scope="module")
def dubber(tiny_corpus, tiny_tts_model, tmp_path_factory):
    """One step of stage 2.2 with the weightless Griffin-Lim vocoder."""
    out = tmp_path_factory.mktemp("dubber")
    run("examples/train_controlnet.py", "--dataset", tiny_corpus, "--dataset_config_name", "level1", "level2",
        "--pretrained_model_name_or_path", tiny_tts_model, "--vocoder_name_or_path", "griffin_lim", "--output_dir", out,
        "--train_batch_size", 2, "--lr_warmup_steps", 0, "--report_to", "none", "--max_train_steps", 1)  # fmt: skip
    return out


def test_the_packed_default_holds_everything_and_dubs_its_sample(dubber, tiny_reasoner, tiny_corpus, tmp_path):
    from deepdubber_hf import DeepDubberPipeline, GriffinLimVocoder

    out = tmp_path / "deepdubber-tiny"
    result = run("scripts/pack_tiny_default.py", "--pipeline", dubber, "--reasoner", tiny_reasoner,
                 "--sample_corpus", tiny_corpus, "--output_dir", out)  # fmt: skip
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0 < summary["size_mb"] < 60
    pipe = DeepDubberPipeline.from_pretrained(out)
    assert pipe.reasoner is not None and pipe.controlnet is not None and pipe.duration_predictor is not None
    assert isinstance(pipe.vocoder, GriffinLimVocoder) and pipe.config.reasoner_mode == "cot"
    line = (out / "sample" / "line.txt").read_text().strip()
    assert line == summary["sample"]["line"] and (out / "sample" / "clip.mp4").stat().st_size > 1000

    # What `make dub` runs: the reasoning printed, a video with the speech muxed in.
    dubbed = tmp_path / "dubbed.mp4"
    command = [os.path.join(os.path.dirname(sys.executable), "deepdubber"), "dub", str(out / "sample" / "clip.mp4"),
               "--text", line, "--model", str(out), "--steps", "1", "-o", str(dubbed)]  # fmt: skip
    printed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert "conclusion:" in printed.stdout and f"wrote {dubbed}" in printed.stdout
    streams = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0",
                              str(dubbed)], capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert sorted(streams) == ["audio", "video"]

    # Too large: refused, and the default already in place is kept as it was.
    refused = run("scripts/pack_tiny_default.py", "--pipeline", dubber, "--reasoner", tiny_reasoner,
                  "--output_dir", out, "--max_size_mb", 0.01, expect_ok=False)  # fmt: skip
    assert refused.returncode != 0 and "over --max_size_mb" in refused.stderr
    assert (out / "sample" / "line.txt").read_text().strip() == line
    assert DeepDubberPipeline.from_pretrained(out).reasoner is not None
