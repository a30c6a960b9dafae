"""configs/accelerate/: every file reads as `accelerate launch` reads it (the DDP, DeepSpeed ZeRO-2 and FSDP ones are
checked down to the plugin they configure, not run: there is no GPU here), the README gives the command for each,
and the three training scripts each run two steps on two CPU processes launched with cpu_2proc.yaml."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "accelerate"
SCALE_CONFIGS = {"ddp.yaml": DistributedType.MULTI_GPU, "deepspeed_zero2.yaml": DistributedType.DEEPSPEED,
                 "fsdp.yaml": DistributedType.FSDP}  # fmt: skip
SCRIPTS = ("train_tts.py", "train_controlnet.py", "train_sft.py")


def launch_options(name):
    """The options `accelerate launch --config_file NAME script.py` ends up with, and the config itself."""
    parser = launch_command_parser()
    args, defaults, _ = _validate_launch_command(parser.parse_args(["--config_file", str(CONFIGS / name), "x.py"]))
    return args, defaults


@pytest.mark.parametrize("name", [*SCALE_CONFIGS, "cpu_2proc.yaml"])
def test_each_config_reads_as_accelerate_launch_reads_it(name, monkeypatch):
    monkeypatch.chdir(REPO)  # where the commands run from: the DeepSpeed file is named relative to it
    config = load_config_from_file(str(CONFIGS / name))  # unknown top-level keys raise here
    assert config.distributed_type == SCALE_CONFIGS.get(name, DistributedType.MULTI_GPU)
    # accelerate turns `deepspeed_config.x` into the launch option `x` and `fsdp_config.x` into `fsdp_x`, and drops
    # a misspelt one without a word: every key must be an option.
    known = vars(launch_command_parser().parse_args(["x.py"]))
    for section in ("deepspeed_config", "fsdp_config"):
        for key in getattr(config, section):
            assert key in known, f"{name}: {section}.{key} is not an option of accelerate launch"

    args, defaults = launch_options(name)
    if config.distributed_type == DistributedType.DEEPSPEED:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
        with mock.patch.dict(os.environ, env, clear=True):
            plugin = DeepSpeedPlugin()  # reads and checks the JSON file the config names
        settings = plugin.deepspeed_config
        assert plugin.zero_stage == 2 and settings["zero_optimization"]["stage"] == 2
        # The scripts' --gradient_accumulation_steps and --mixed_precision decide; clipping is DeepSpeed's (the
        # scripts' clip_grad_norm_ is a no-op under DeepSpeed), at their --max_grad_norm default.
        assert settings["gradient_accumulation_steps"] == "auto" and settings["bf16"]["enabled"] == "auto"
        assert settings["gradient_clipping"] == 1.0
        # An integer: train_tts.py prepares its model without a dataloader (its batches are frame budgets).
        assert isinstance(settings["train_micro_batch_size_per_gpu"], int)
        assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in env
    else:
        env = prepare_multi_gpu_env(args)
        if config.distributed_type == DistributedType.FSDP:
            with mock.patch.dict(os.environ, env, clear=True):
                plugin = FullyShardedDataParallelPlugin()
            assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
            assert plugin.state_dict_type.name == "FULL_STATE_DICT" and plugin.auto_wrap_policy is not None
        assert env["ACCELERATE_MIXED_PRECISION"] == ("no" if name == "cpu_2proc.yaml" else "bf16")
    assert args.num_processes == (2 if name == "cpu_2proc.yaml" else 8)


def test_the_readme_gives_the_command_of_each_config_for_each_script():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Training at scale") :]
    section = section[: section.index("\n## ", 1)]
    for name in SCALE_CONFIGS:
        for script in SCRIPTS:
            assert f"--config_file configs/accelerate/{name}" in section and f"examples/{script}" in section
    assert "configs/accelerate/cpu_2proc.yaml" in section


def launch(script, *args):
    """Two CPU processes of `script` through `accelerate launch --config_file configs/accelerate/cpu_2proc.yaml`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "cpu_2proc.yaml"),
               "--main_process_port", str(port), str(REPO / "examples" / script), *map(str, args)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ACCELERATE_USE_CPU": "1",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def check_two_process_run(output_dir):
    """Two logged steps, and a checkpoint holding the random state of each of the two processes."""
    with open(output_dir / "train_log.jsonl") as handle:
        assert [json.loads(line)["step"] for line in handle if line.strip()] == [1, 2]
    assert (output_dir / "checkpoint-2" / "random_states_1.pkl").is_file()
    assert not (output_dir / "checkpoint-2" / "random_states_2.pkl").exists()


COMMON = ["--max_train_steps", 2, "--checkpointing_steps", 2, "--train_batch_size", 2, "--lr_warmup_steps", 0,
          "--report_to", "none", "--dataloader_num_workers", 0]  # fmt: skip


def test_train_tts_on_two_cpu_processes(tiny_corpus, tmp_path):
    out = tmp_path / "tts"
    launch("train_tts.py", "--dataset", tiny_corpus, "--dataset_config_name", "level1", "--text_column", "transcript",
           "--model_config", "tiny", "--output_dir", out, *COMMON)  # fmt: skip
    check_two_process_run(out)
    assert (out / "transformer" / "diffusion_pytorch_model.safetensors").is_file()


def test_train_controlnet_on_two_cpu_processes(tiny_corpus, tiny_tts_model, tmp_path):
    out = tmp_path / "dubber"
    launch("train_controlnet.py", "--dataset", tiny_corpus, "--dataset_config_name", "level1", "level2",
           "--pretrained_model_name_or_path", tiny_tts_model, "--output_dir", out, *COMMON)  # fmt: skip
    check_two_process_run(out)
    assert (out / "model_index.json").is_file() and (out / "controlnet").is_dir()


def test_train_sft_on_two_cpu_processes(tiny_corpus, tmp_path):
    out = tmp_path / "sft"
    launch("train_sft.py", "--dataset", tiny_corpus, "--dataset_config_name", "level1", "level2", "--output_dir", out,
           "--num_frames", 2, "--tokenizer_vocab_size", 400, *COMMON)  # fmt: skip
    check_two_process_run(out)
    assert (out / "model.safetensors").is_file()
