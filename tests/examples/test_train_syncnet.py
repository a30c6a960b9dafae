"""examples/train_syncnet.py through `accelerate launch` on the tiny generated corpus: trains, resumes, and the
saved SyncNet scores LSE."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepdubber_hf.evaluation.syncnet import SyncNetModel, lse_scores

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "train_syncnet.py"


def run_script(args, check=True):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--num_processes", "1", "--cpu"]  # fmt: skip
    result = subprocess.run([*launch, str(SCRIPT), *map(str, args)], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"train_syncnet.py failed ({result.returncode}):\n{result.stderr[-5000:]}")
    return result


def common(tiny_corpus, out):
    # The tiny corpus's one level-1 monologue with a face the cascade finds; 4 windows of it per epoch.
    return ["--dataset", tiny_corpus, "--output_dir", out, "--train_batch_size", 2, "--windows_per_clip", 4,
            "--lr_warmup_steps", 0, "--checkpointing_steps", 2, "--report_to", "none", "--max_offset", 6,
            "--num_offsets", 4]  # fmt: skip


def logged(folder):
    with open(Path(folder) / "train_log.jsonl") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_trains_resumes_and_saves_a_syncnet_that_scores_lse(tiny_corpus, tmp_path, clip):
    out = tmp_path / "syncnet"
    run_script([*common(tiny_corpus, out), "--max_train_steps", 2])
    assert [e["step"] for e in logged(out)] == [1, 2]
    assert all(math.isfinite(e["loss"]) and 0 <= e["sync_accuracy"] <= 1 for e in logged(out))
    assert (out / "checkpoint-2").is_dir() and not [n for n in os.listdir(out) if n.startswith("tmp")]
    after_2 = load_file(str(out / "diffusion_pytorch_model.safetensors"))

    run_script([*common(tiny_corpus, out), "--max_train_steps", 3, "--resume_from_checkpoint", "latest",
                "--num_validation_clips", 1, "--validation_split", "train"])  # fmt: skip
    assert [e["step"] for e in logged(out)] == [1, 2, 3]
    after_3 = load_file(str(out / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(after_2[k], after_3[k]) for k in after_2)
    report = json.loads((out / "validation.json").read_text())
    assert report["num_clips"] == 1 and report["shift_frames"] == 10
    assert report["synced"]["lse_c"] >= 0 and report["shifted"]["lse_c"] >= 0

    model = SyncNetModel.from_pretrained(out)
    assert model.config.crop_region == "mouth" and model.config.crop_size == 64
    scores = lse_scores(clip[0], clip[1]["audio"], str(out), vshift=15, face_detection_stride=5)
    assert math.isfinite(scores["lse_d"]) and scores["lse_c"] >= 0 and abs(scores["offset"]) <= 15


def test_bad_arguments_are_named(tiny_corpus, tmp_path):
    sys.path.insert(0, str(REPO / "examples"))
    from train_syncnet import main, parse_args

    with pytest.raises(ValueError, match="--crop_size must be at least 51"):
        parse_args([*map(str, common(tiny_corpus, tmp_path / "o")), "--crop_size", "32"])
    with pytest.raises(ValueError, match="has a face"):  # narrations show no speaking face
        main(parse_args([*map(str, common(tiny_corpus, tmp_path / "o")), "--scene_types", "narration",
                         "--max_train_samples", "1"]))  # fmt: skip


@pytest.mark.parametrize("loss", ["multiway", "contrastive"])
def test_a_step_of_either_loss_lowers_it_on_a_repeated_batch(loss):
    sys.path.insert(0, str(REPO / "examples"))
    from train_syncnet import contrastive_loss, embed_batch, multiway_loss

    torch.manual_seed(0)
    model = SyncNetModel(audio_channels=(4, 8, 8, 8, 8, 8), lip_channels=(4, 8, 8, 8, 8, 8), fc_hidden_size=8,
                         embedding_dim=8, crop_size=51, crop_region="mouth")  # fmt: skip
    batch = {"pixel_values": torch.rand(4, 3, 5, 51, 51) * 255, "mfcc": torch.randn(4, 3, 1, 13, 20),
             "valid": torch.ones(4, 3, dtype=torch.bool), "offsets": torch.tensor([[0, 4, -5]] * 4),
             "clip": torch.arange(4)}  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        video, audio = embed_batch(model, batch)
        if loss == "multiway":
            value, _ = multiway_loss(video, audio, batch["valid"], batch["clip"])
        else:
            value, _ = contrastive_loss(video, audio, batch["valid"], batch["offsets"], batch["clip"], 3, 10.0)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[-1] < losses[0]
