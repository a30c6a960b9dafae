"""examples/train_controlnet.py (stage 2.2) and examples/evaluate_dubbing.py run on the tiny generated corpus."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from deepdubber_hf import DeepDubberPipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))

from evaluate_dubbing import mouth_motion_span, timing_errors  # noqa: E402


def run(script, *args, expect_ok=True):
    command = [sys.executable, os.path.join(ROOT, "examples", script), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if expect_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def base_model(tiny_tts_model):
    """A stage 2.1 output folder (the shared `tiny_tts_model` of conftest.py)."""
    return tiny_tts_model


def common(tiny_corpus, base_model, out):
    return ["--dataset", tiny_corpus, "--dataset_config_name", "level1", "level2", "--pretrained_model_name_or_path",
            base_model, "--output_dir", out, "--train_batch_size", 2, "--lr_warmup_steps", 0, "--report_to", "none",
            "--checkpointing_steps", 2]  # fmt: skip


def logged(folder):
    with open(os.path.join(folder, "train_log.jsonl")) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_stage_2_2_trains_resumes_and_saves_a_dubbing_pipeline(tiny_corpus, base_model, tmp_path, clip):
    out = tmp_path / "dubber"
    run("train_controlnet.py", *common(tiny_corpus, base_model, out), "--max_train_steps", 2)
    log = logged(out)
    assert [e["step"] for e in log] == [1, 2]
    assert all(e["loss"] == pytest.approx(e["loss_flow"] + e["loss_duration"] + e["loss_activity"], rel=1e-4)
               for e in log)  # fmt: skip
    assert (out / "checkpoint-2").is_dir() and not [n for n in os.listdir(out) if n.startswith("tmp")]
    controlnet_after_2 = load_file(str(out / "controlnet" / "diffusion_pytorch_model.safetensors"))

    run("train_controlnet.py", *common(tiny_corpus, base_model, out), "--max_train_steps", 3,
        "--resume_from_checkpoint", "latest")  # fmt: skip
    assert [e["step"] for e in logged(out)] == [1, 2, 3]
    # The resumed run's third batch is the one an uninterrupted run trains on (the seeded shuffle).
    straight = tmp_path / "straight"
    run("train_controlnet.py", *common(tiny_corpus, base_model, straight), "--max_train_steps", 3)
    assert logged(out)[2]["loss_activity"] == pytest.approx(logged(straight)[2]["loss_activity"], rel=1e-5)
    controlnet_after_3 = load_file(str(out / "controlnet" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(controlnet_after_2[k], controlnet_after_3[k]) for k in controlnet_after_2)
    # The zero-initialised output layers have moved: the ControlNet now speaks to the DiT.
    assert controlnet_after_3["controlnet_blocks.0.weight"].abs().sum() > 0
    # The base DiT stayed frozen.
    base = load_file(str(base_model / "transformer" / "diffusion_pytorch_model.safetensors"))
    saved = load_file(str(out / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(base[k], saved[k]) for k in base)

    pipe = DeepDubberPipeline.from_pretrained(out)
    assert pipe.duration_predictor is not None and pipe.controlnet is not None
    dubbed = pipe(video=clip[0], text="Where is the map?", num_inference_steps=1,
                  conclusion="scene type: monologue; speakers: 1; gender: male; age: adult; emotion: sad")  # fmt: skip
    assert abs(dubbed.audios[0].shape[0] / dubbed.sampling_rate - clip[1]["duration_s"]) < 0.05

    result = run("evaluate_dubbing.py", "--model", out, "--dataset", tiny_corpus, "--dataset_config_name", "level1",
                 "--split", "train", "--conditions", "video", "no_video", "no_duration_predictor", "--pad_video_s", 1,
                 "--output_dir", tmp_path / "timing")  # fmt: skip
    written = json.loads((tmp_path / "timing" / "timing.json").read_text())
    report = written["results"]
    assert written["pad_video_s"] == 1
    assert set(report) == {"video", "no_video", "no_duration_predictor"}
    assert all(r["num_clips"] >= 1 and r["onset_mae_s"] >= 0 for r in report.values())
    assert "| video |" in result.stdout and (tmp_path / "timing" / "timing.md").is_file()


def test_the_table_7_ablations_train_and_save_without_their_parts(tiny_corpus, base_model, tmp_path):
    out = tmp_path / "ablated"
    run("train_controlnet.py", *common(tiny_corpus, base_model, out), "--max_train_steps", 1, "--no_video",
        "--no_conclusion", "--no_duration_predictor", "--pad_video_s", 0.5)  # fmt: skip
    assert "loss_duration" not in logged(out)[0] and "loss_activity" not in logged(out)[0]
    index = json.loads((out / "model_index.json").read_text())
    assert index["duration_predictor"] == [None, None] and index["condition_encoder"] == [None, None]
    assert index["controlnet"][1] == "DeepDubberControlNetModel"


def test_bad_arguments_are_named(tiny_corpus, base_model, tmp_path):
    result = run("train_controlnet.py", *common(tiny_corpus, tmp_path / "nothing", tmp_path / "o"), expect_ok=False)
    assert result.returncode != 0 and "transformer/ and tokenizer/" in result.stderr
    result = run("train_controlnet.py", *common(tiny_corpus, base_model, tmp_path / "o"), "--video_drop_prob", 2,
                 expect_ok=False)  # fmt: skip
    assert "not a probability" in result.stderr


def test_the_duration_predictor_trains_alone_on_padded_clips(tiny_corpus, base_model, tmp_path):
    out = tmp_path / "timing_only"
    run("train_controlnet.py", *common(tiny_corpus, base_model, out), "--max_train_steps", 2,
        "--duration_predictor_only", "--pad_video_s", 1.0)  # fmt: skip
    assert all(set(e) == {"step", "loss", "loss_duration", "loss_activity", "lr"} for e in logged(out))
    pipe = DeepDubberPipeline.from_pretrained(out)
    assert all(float(p.abs().sum()) == 0 for p in pipe.controlnet.controlnet_blocks.parameters())  # left as it was


def test_flow_every_n_steps_on_an_average_upsampling_base_with_frame_weights(tiny_corpus, base_model, tmp_path):
    """`--flow_every 2`: the flow loss on steps 1 and 3 only; the base spreads its text by measured frame weights
    (what `train_tts.py --text_alignment viterbi` writes), as the pipeline does."""
    from deepdubber_hf import DeepDubberTokenizer, DiTTransformerModel

    base = tmp_path / "average_base"
    transformer = DiTTransformerModel.from_pretrained(base_model / "transformer", text_upsampling="average")
    assert transformer.config.text_upsampling == "average"
    transformer.save_pretrained(base / "transformer")
    plain = DeepDubberTokenizer.from_pretrained(base_model / "tokenizer")
    weights = [0.0 if token in " ,.?!" else 5.0 for token in plain.convert_ids_to_tokens(range(plain.vocab_size))]
    DeepDubberTokenizer(plain.vocab_file, frame_weights=weights, edge_frames=[4.0, 6.0]).save_pretrained(
        base / "tokenizer")  # fmt: skip
    out = tmp_path / "sparse_flow"
    run("train_controlnet.py", *common(tiny_corpus, base, out), "--max_train_steps", 3, "--flow_every", 2,
        "--vocoder_name_or_path", "griffin_lim")  # fmt: skip
    log = logged(out)
    assert ["loss_flow" in e for e in log] == [True, False, True]
    assert all(e["loss_duration"] > 0 for e in log)
    pipe = DeepDubberPipeline.from_pretrained(out)
    assert pipe.transformer.config.text_upsampling == "average" and pipe.tokenizer.frame_weights == weights


def test_mouth_motion_ground_truth_and_errors():
    openness = [[0, 0, 0.5, 0.2, 0, 0], [0, 0, 0, 0, 0.3, 0]]  # two characters, six frames at 2 fps
    assert mouth_motion_span(openness, fps=2) == (1.0, 2.5)
    assert mouth_motion_span([[0, 0, 0]], fps=2) is None
    errors = timing_errors([(1.0, 2.0), (0.0, 1.0)], [(1.5, 2.0), (0.0, 2.0)])
    assert errors == {"onset_mae_s": 0.25, "offset_mae_s": 0.5, "duration_mae_s": 0.75, "num_clips": 2}
