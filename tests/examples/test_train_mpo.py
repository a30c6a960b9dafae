"""Stage 1.2 end to end on tiny data: sample preference pairs from an SFT reasoner, then MPO (full and LoRA)."""

import json
import os
import subprocess
import sys

import datasets
import torch
from transformers import AutoModelForImageTextToText

import deepdubber_hf.reasoner  # noqa: F401
from deepdubber_hf.reasoner.cot import format_reward

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(script, *args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args], capture_output=True,
                            text=True, env=ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_pairs_then_mpo(tiny_corpus, tiny_reasoner, tmp_path):
    pairs = str(tmp_path / "pairs")
    run("build_preference_pairs.py", "--model", tiny_reasoner, "--dataset", tiny_corpus, "--dataset_config_name",
        "level1", "--num_clips", "3", "--num_samples", "2", "--max_new_tokens", "16", "--output_dir", pairs)  # fmt: skip
    dataset = datasets.load_from_disk(pairs)
    with open(os.path.join(pairs, "pairs_summary.json")) as handle:
        summary = json.load(handle)
    assert summary["clips"] == 3 and summary["samples"] == 6 and summary["pairs"] == len(dataset) >= 1
    row = dataset[0]
    assert len(row["images"]) == 2 and row["prompt"][0]["role"] == "user"
    # An untrained model's samples are ill-formed: the reference annotation is the chosen response.
    assert format_reward(row["chosen"][0]["content"][0]["text"]) == 1.0 == row["chosen_format"]
    assert row["rejected_format"] == 0.0

    common = ["--dataset", pairs, "--per_device_train_batch_size", "1", "--max_steps", "2", "--use_cpu",
              "--bf16", "false", "--report_to", "none", "--learning_rate", "1e-3", "--save_steps", "2", "--logging_steps", "1"]  # fmt: skip
    for name, extra in (("full", ["--freeze_vision_tower"]), ("lora", ["--use_lora", "--lora_rank", "4"])):
        out = str(tmp_path / name)
        run("train_mpo.py", "--model_name_or_path", tiny_reasoner, "--output_dir", out, *common, *extra)
        assert os.path.isdir(os.path.join(out, "checkpoint-2"))
        before = AutoModelForImageTextToText.from_pretrained(tiny_reasoner)
        after = AutoModelForImageTextToText.from_pretrained(out)
        changed = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters())]
        assert any(changed), name
        if name == "full":  # the tower frozen, the rest trained
            tower = after.model.vision_tower.state_dict()
            assert all(torch.equal(v, tower[k]) for k, v in before.model.vision_tower.state_dict().items())
        with open(os.path.join(out, "checkpoint-2", "trainer_state.json")) as handle:
            logged = json.load(handle)["log_history"][0]
        assert {"loss/preference", "loss/quality", "loss/generation", "loss/format", "loss/outcome"} <= set(logged)


def test_pairs_in_qa_mode_ask_the_direct_question(tiny_corpus, tiny_reasoner, tmp_path):
    from deepdubber_hf.reasoner.prompts import QA_QUESTION

    pairs = str(tmp_path / "pairs_qa")
    run("build_preference_pairs.py", "--model", tiny_reasoner, "--dataset", tiny_corpus, "--dataset_config_name",
        "level1", "--num_clips", "2", "--num_samples", "2", "--max_new_tokens", "16", "--mode", "qa",
        "--output_dir", pairs)  # fmt: skip
    dataset = datasets.load_from_disk(pairs)
    row = dataset[0]
    assert row["prompt"][0]["content"][-1]["text"] == QA_QUESTION
    # The untrained model's answers are unreadable; the chosen one is the clip's reference answer line.
    chosen = row["chosen"][0]["content"][0]["text"]
    assert chosen.startswith("scene type:") and "<CONCLUSION>" not in chosen
    assert format_reward(chosen, mode="qa") == 1.0 == row["chosen_format"] and format_reward(chosen) == 0.0
    assert row["rejected_format"] == format_reward(row["rejected"][0]["content"][0]["text"], mode="qa")
    out = str(tmp_path / "mpo_qa")
    run("train_mpo.py", "--model_name_or_path", tiny_reasoner, "--output_dir", out, "--dataset", pairs,
        "--per_device_train_batch_size", "1", "--max_steps", "1", "--use_cpu", "--bf16", "false", "--report_to",
        "none", "--save_strategy", "no", "--freeze_vision_tower")  # fmt: skip
    assert os.path.isfile(os.path.join(out, "model.safetensors"))
