"""examples/evaluate_dubbing.py --setting: the paper's tables from real dubbing runs, every metric offline."""

import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "pipelines"))

from test_dubbing import tiny_dubbing_pipeline  # noqa: E402


def run(*args, expect_ok=True):
    command = [sys.executable, os.path.join(ROOT, "examples", "evaluate_dubbing.py"), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})  # fmt: skip
    if expect_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from deepdubber_hf.evaluation.syncnet import SYNCNET_TINY_CONFIG, SyncNetModel

    root = tmp_path_factory.mktemp("models")
    tiny_dubbing_pipeline(root / "build").save_pretrained(root / "dubber")
    torch.manual_seed(0)
    SyncNetModel(**SYNCNET_TINY_CONFIG).save_pretrained(root / "syncnet")  # untrained: the numbers run, not rank
    return root


def test_table_7_ablations_with_every_metric(tiny_corpus, models, tmp_path):
    out = tmp_path / "dub2"
    result = run("--setting", "2.0", "--model", models / "dubber", "--dataset", tiny_corpus, "--dataset_config_name",
                 "level1", "--split", "train", "--num_clips", 4, "--conditions", "video", "no_video",
                 "--syncnet", models / "syncnet", "--asr", "pocketsphinx", "--num_inference_steps", 2,
                 "--num_plots", 1, "--output_dir", out)  # fmt: skip
    report = json.loads((out / "results.json").read_text())
    assert report["table"] == "ablation" and list(report["results"]) == ["Proposed", "w/o clip"]
    for row in report["results"].values():
        assert row["num_clips"] == 4 and row["wer"] >= 0  # three narrations, then a dialogue
        assert -1 <= row["spk_sim"] <= 1 and row["mcd_dtw"] > 0 and row["mcd_dtw_sl"] >= row["mcd_dtw"]
        assert row["lse_d"] > 0 and row["lse_c"] >= 0
        assert row["emo_sim"] is None and "emo_sim" in row["unavailable"]  # no emotion model: said, not invented
    for clip in report["clips"]:  # a narrator's lips do not speak the line: no LSE
        assert (clip["scores"]["video"]["lse_d"] is None) == (clip["scene_type"] == "narration")
    assert row["lse_clips"] == sum(c["scene_type"] != "narration" for c in report["clips"]) >= 1
    clip = report["clips"][0]
    assert clip["reference_kind"] == "same-speaker" and set(clip["scores"]) == {"video", "no_video"}
    assert (out / "audio" / "video" / f"{clip['clip_id']}.wav").is_file()
    assert (out / f"mel_{clip['clip_id']}.png").is_file() and not (out / "confusion_matrix.png").exists()
    markdown = (out / "results.md").read_text()
    assert "Ablations in the Dub 2.0 setting" in markdown and "| w/o clip |" in markdown and "n/a" in markdown
    assert markdown in result.stdout


def test_ground_truth_is_the_floor(tiny_corpus, tmp_path):
    out = tmp_path / "gt"
    run("--setting", "1.0", "--model", "ground-truth", "--dataset", tiny_corpus, "--dataset_config_name", "level1",
        "--split", "train", "--num_clips", 2, "--metrics", "spk_sim", "mcd", "--num_plots", 0, "--output_dir", out)
    (row,) = json.loads((out / "results.json").read_text())["results"].values()
    # The real speech against itself: the same voice, no distortion.
    assert row["spk_sim"] == pytest.approx(1.0, abs=1e-4) and row["mcd_dtw"] == 0.0 and row["wer"] is None
    assert "| GT |" in (out / "results.md").read_text()


def test_no_reference_speaks_in_the_models_own_voice(tiny_corpus, models, tmp_path):
    out = tmp_path / "own"
    run("--setting", "2.0", "--no_reference", "--model", models / "dubber", "--dataset", tiny_corpus,
        "--dataset_config_name", "level1", "--split", "train", "--num_clips", 2, "--metrics", "spk_sim",
        "--num_inference_steps", 1, "--num_plots", 0, "--output_dir", out)  # fmt: skip
    report = json.loads((out / "results.json").read_text())
    assert report["reference_voice"] is False
    assert "No reference voice" in (out / "results.md").read_text()
    for clip in report["clips"]:
        assert clip["reference_kind"] == "none" and clip["reference_row"] == -1
        assert (out / "audio" / "video" / f"{clip['clip_id']}.wav").is_file()
    result = run("--setting", "1.0", "--no_reference", "--model", "ground-truth", "--dataset", tiny_corpus,
                 "--output_dir", tmp_path, expect_ok=False)  # fmt: skip
    assert result.returncode != 0 and "--no_reference applies to a pipeline" in result.stderr


def test_initial_reasoning_scores_the_reasoner_and_picks_voices_by_its_answer(tiny_corpus, tiny_reasoner, tmp_path):
    from deepdubber_hf import DeepDubberPipeline
    from deepdubber_hf.reasoner.generation import load_reasoner

    pipe = tiny_dubbing_pipeline(tmp_path / "build")
    model, processor = load_reasoner(tiny_reasoner)
    pipe.register_modules(reasoner=model, reasoner_processor=processor)
    pipe.save_pretrained(tmp_path / "dubber")
    assert DeepDubberPipeline.from_pretrained(tmp_path / "dubber").reasoner is not None
    out = tmp_path / "initial"
    run("--setting", "initial-reasoning", "--model", tmp_path / "dubber", "--dataset", tiny_corpus,
        "--dataset_config_name", "level1", "--split", "train", "--num_clips", 2, "--metrics", "spk_sim",
        "--num_inference_steps", 1, "--num_plots", 0, "--output_dir", out)  # fmt: skip
    report = json.loads((out / "results.json").read_text())
    reasoning = report["reasoning"]
    assert reasoning["num_clips"] == 2 and 0 <= reasoning["accuracy"] <= 1
    (row,) = report["results"].values()
    assert row["accuracy"] == reasoning["accuracy"] and (out / "confusion_matrix.png").is_file()
    for clip in report["clips"]:  # the right scene type keeps the speaker's voice, a wrong one takes another's
        expected = "same-speaker" if clip["predicted_scene_type"] == clip["scene_type"] else "other-speaker"
        assert clip["reference_kind"] == expected
    assert "Ave.Acc (%)" in (out / "results.md").read_text()


def test_bad_requests_are_named(tiny_corpus, tmp_path):
    result = run("--setting", "initial-reasoning", "--model", "ground-truth", "--dataset", tiny_corpus,
                 "--output_dir", tmp_path, expect_ok=False)  # fmt: skip
    assert result.returncode != 0 and "needs a pipeline with a reasoner" in result.stderr
    result = run("--model", "ground-truth", "--dataset", tiny_corpus, "--output_dir", tmp_path, expect_ok=False)
    assert result.returncode != 0 and "give a --setting" in result.stderr
