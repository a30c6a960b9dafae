"""examples/train_sft.py run for a few steps on a tiny generated corpus (both SFT modes, resume)."""

import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

import deepdubber_hf.reasoner  # noqa: F401
from deepdubber_hf.reasoner.generation import parse_response, reason

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "examples", "train_sft.py")


def run_sft(*args):
    command = [sys.executable, SCRIPT, "--report_to", "none", "--num_frames", "2", "--train_batch_size", "2",
               "--lr_warmup_steps", "0", "--dataloader_num_workers", "0", "--tokenizer_vocab_size", "400", *args]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def steps_logged(folder):
    with open(os.path.join(folder, "train_log.jsonl")) as handle:
        return [json.loads(line)["step"] for line in handle if line.strip()]


def test_cot_sft_trains_saves_and_resumes(tiny_corpus, tmp_path):
    out = str(tmp_path / "sft")
    common = ["--dataset", tiny_corpus, "--dataset_config_name", "level1", "level2", "--output_dir", out,
              "--checkpointing_steps", "2", "--lr_scheduler", "constant"]  # fmt: skip (lr > 0 after the resume)
    run_sft(*common, "--max_train_steps", "2")
    assert os.path.isdir(os.path.join(out, "checkpoint-2")) and steps_logged(out) == [1, 2]
    assert not any(name.startswith("tmp-") for name in os.listdir(out))
    first = AutoModelForImageTextToText.from_pretrained(out)

    run_sft(*common, "--max_train_steps", "3", "--resume_from_checkpoint", "latest")
    assert steps_logged(out) == [1, 2, 3]
    resumed = AutoModelForImageTextToText.from_pretrained(out)
    assert any(not torch.equal(a, b) for a, b in zip(first.parameters(), resumed.parameters()))

    processor = AutoProcessor.from_pretrained(out)
    assert processor.num_frames == 2
    video = os.path.join(tmp_path, "clip.mp4")
    import datasets

    row = datasets.load_dataset(tiny_corpus, "level1", split="test").cast_column(
        "video", datasets.Video(decode=False)
    )[0]
    with open(video, "wb") as handle:
        handle.write(row["video"]["bytes"])
    text = reason(resumed, processor, [video], max_new_tokens=8)[0][0]
    parse_response(text)  # an untrained model's text: parsed to a conclusion or a typed failure, never an error


def test_qa_mode_learns_the_answer_column(tiny_corpus, tmp_path):
    out = str(tmp_path / "qa")
    run_sft("--dataset", tiny_corpus, "--dataset_config_name", "level1", "--output_dir", out, "--mode", "qa",
            "--max_train_steps", "1")  # fmt: skip
    assert steps_logged(out) == [1]
    assert os.path.isfile(os.path.join(out, "model.safetensors"))


def test_bad_column_is_named(tiny_corpus, tmp_path):
    command = [sys.executable, SCRIPT, "--dataset", tiny_corpus, "--dataset_config_name", "level1",
               "--output_dir", str(tmp_path), "--video_column", "clip", "--report_to", "none"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0 and "'clip'" in result.stderr and "--video_column" in result.stderr


def test_pretrained_vision_tower_is_the_start_of_sft(tiny_corpus, tmp_path):
    from transformers import AutoModel

    tower_dir = str(tmp_path / "tower")
    command = [sys.executable, os.path.join(ROOT, "examples", "pretrain_vision_tower.py"), "--dataset", tiny_corpus,
               "--dataset_config_name", "level1", "level2", "--output_dir", tower_dir, "--max_train_steps", "3",
               "--batch_size", "2", "--num_frames", "2", "--dataloader_num_workers", "0"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(tower_dir, "pretrain_log.jsonl")) as handle:
        losses = [json.loads(line)["loss"] for line in handle]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    with open(os.path.join(tower_dir, "head_accuracies.json")) as handle:  # measured on the corpus's test split
        scores = json.load(handle)
    heads, talking = scores["heads"], scores["talking"]
    assert talking["characters"] > 0 and 0 <= talking["accuracy"] <= 100 and 50 <= talking["majority"] <= 100
    assert 0 <= talking["accuracy_share"] <= 100
    assert heads["count"]["frames"] > 0 and 0 <= heads["count"]["accuracy"] <= 100
    assert all(head["frames"] == 0 or 0 <= head["accuracy"] <= 100 for head in heads.values())
    assert all(head["frames"] == 0 or 100 / 5 <= head["majority"] <= 100 for head in heads.values())
    tower = AutoModel.from_pretrained(tower_dir)

    out = str(tmp_path / "sft")
    run_sft("--dataset", tiny_corpus, "--dataset_config_name", "level1", "--output_dir", out, "--max_train_steps",
            "1", "--vision_tower_name_or_path", tower_dir, "--freeze_vision_tower")  # fmt: skip
    reasoner = AutoModelForImageTextToText.from_pretrained(out)
    assert reasoner.config.pooled_regions == 3 and reasoner.config.image_seq_length == 2 * 2 + 1 + 3
    assert reasoner.config.temporal_pooling
    for name, value in tower.state_dict().items():
        assert torch.equal(value, reasoner.model.vision_tower.state_dict()[name]), name  # loaded, then frozen


def _pretrain_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pretrain", os.path.join(ROOT, "examples", "pretrain_vision_tower.py"))
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    return pretrain


def test_talking_heads_read_each_clip_as_a_whole():
    from transformers import AutoConfig, AutoModel

    from deepdubber_hf.reasoner.configuration_reasoner import TINY_RESNET_VISION_CONFIG

    pretrain = _pretrain_module()
    torch.manual_seed(0)
    tower = AutoModel.from_config(AutoConfig.for_model("resnet", **TINY_RESNET_VISION_CONFIG)).eval()
    model = pretrain.FrameClassifier(tower, TINY_RESNET_VISION_CONFIG["hidden_sizes"][-1]).eval()
    frames = torch.randn(2 * 5, 3, 64, 64)  # two clips of five frames
    with torch.no_grad():
        logits = model(frames, frames_per_clip=5)
        shuffled = model(frames[[3, 0, 4, 1, 2, 5, 6, 7, 8, 9]], frames_per_clip=5)  # the first clip's order only
        alone = model(frames[5:], frames_per_clip=5)
        per_frame = model(frames)
    assert logits["talking1"].shape == (2, 2) and logits["mouth1"].shape == (10, 2)
    for name in pretrain.CLIP_HEADS:
        assert torch.allclose(logits[name], shuffled[name], atol=1e-5)  # a clip's statistics, whatever the order
        assert torch.allclose(logits[name][1], alone[name][0], atol=1e-5)  # each clip read on its own
        assert not torch.allclose(logits[name][0], logits[name][1])
        assert name not in per_frame  # without whole clips there is nothing to read


def test_vision_tower_trains_talking_heads_on_the_reasoners_frames(tiny_corpus, tmp_path):
    from transformers import AutoConfig, AutoModel

    from deepdubber_hf.reasoner.configuration_reasoner import TINY_RESNET_VISION_CONFIG

    start_dir, tower_dir = str(tmp_path / "start"), str(tmp_path / "tower")
    start = AutoModel.from_config(AutoConfig.for_model("resnet", **{**TINY_RESNET_VISION_CONFIG, "image_size": 96}))
    start.save_pretrained(start_dir)  # a tower saved before: the run goes on from it
    command = [sys.executable, os.path.join(ROOT, "examples", "pretrain_vision_tower.py"), "--dataset", tiny_corpus,
               "--dataset_config_name", "level1", "--output_dir", tower_dir, "--max_train_steps", "2", "--batch_size",
               "2", "--num_frames", "10", "--frame_sampling", "reasoner", "--head_weight", "talking=2",
               "--init_from", start_dir, "--dataloader_num_workers", "0"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(tower_dir, "pretrain_log.jsonl")) as handle:
        assert all(json.loads(line)["loss_talking"] > 0 for line in handle)
    with open(os.path.join(tower_dir, "head_accuracies.json")) as handle:
        scores = json.load(handle)
    clips = sum(scores["heads"][f"talking{k}"]["frames"] for k in range(3))  # (clip, slot) pairs with a character
    assert 0 < clips <= scores["talking"]["characters"]
    assert 0 <= scores["talking"]["accuracy_head"] <= 100
    tower = AutoModel.from_pretrained(tower_dir)
    assert tower.config.image_size == 96  # the starting tower's configuration
    assert any(not torch.equal(value, start.state_dict()[name]) for name, value in tower.state_dict().items())


def test_vision_tower_head_weights_cover_every_slot_and_reject_unknown_kinds():
    import pytest

    pretrain = _pretrain_module()
    weights = pretrain.head_weights(["mouth=4", "emotion=0"])
    assert [weights[f"mouth{k}"] for k in range(3)] == [4.0] * 3 and weights["emotion1"] == 0.0
    assert weights["count"] == weights["gender2"] == 1.0
    for bad in ("lips=2", "mouth=-1", "mouth"):
        with pytest.raises(ValueError, match="--head_weight"):
            pretrain.head_weights([bad])


def test_vision_tower_names_a_missing_eval_split(tiny_corpus, tmp_path):
    command = [sys.executable, os.path.join(ROOT, "examples", "pretrain_vision_tower.py"), "--dataset", tiny_corpus,
               "--dataset_config_name", "level1", "--eval_split", "validation", "--output_dir", str(tmp_path / "t")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0 and "'validation'" in result.stderr and "--eval_split ''" in result.stderr
