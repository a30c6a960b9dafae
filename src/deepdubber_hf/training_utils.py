"""Checkpoint folders shared by the training scripts: atomic `accelerate` checkpoints and how to resume them; and
the whole weights of a model that FSDP has split between processes, for `save_pretrained`.

A checkpoint is written into `tmp-checkpoint-{step}` and renamed to `checkpoint-{step}` only once every process
has written its part, so a crash never leaves a half-written folder that looks finished.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable

from accelerate.logging import get_logger
from accelerate.utils import DistributedType

logger = get_logger(__name__)

TRAINING_STATE_FILE = "training_state.json"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """Finished checkpoints `(step, path)` in `output_dir`, oldest first (temporary folders never match)."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_PATTERN.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return sorted(found)


def save_checkpoint(
    accelerator,
    output_dir: str,
    global_step: int,
    total_limit: int | None,
    export: Callable[[str], None] | None = None,
) -> str:
    """`accelerator.save_state` into `tmp-checkpoint-{step}`, renamed to `checkpoint-{step}` once every process
    has written its part. `export(folder)`, run on the main process before the rename, may add files (e.g. a
    loadable copy of the model). Keeps the newest `total_limit` checkpoints."""
    final_dir = os.path.join(output_dir, f"checkpoint-{global_step}")
    tmp_dir = os.path.join(output_dir, f"tmp-checkpoint-{global_step}")
    if accelerator.is_main_process and os.path.isdir(tmp_dir):  # left over by a crash
        shutil.rmtree(tmp_dir)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp_dir)  # every process writes its random states
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with open(os.path.join(tmp_dir, TRAINING_STATE_FILE), "w") as handle:
            json.dump({"global_step": global_step}, handle)
        if export is not None:
            export(tmp_dir)
        if os.path.isdir(final_dir):  # same step saved by an earlier run: replace it
            shutil.rmtree(final_dir)
        os.replace(tmp_dir, final_dir)
        if total_limit is not None:
            for _, old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
        logger.info(f"Saved {final_dir}")
    accelerator.wait_for_everyone()
    return final_dir


def resolve_checkpoint(output_dir: str, resume_from_checkpoint: str | None) -> str | None:
    """The checkpoint folder `--resume_from_checkpoint` points at (a folder, its name in `output_dir`, or
    `latest`), or None to start afresh."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1][1] if checkpoints else None
    for path in (resume_from_checkpoint, os.path.join(output_dir, resume_from_checkpoint)):
        if os.path.isdir(path):
            return path
    raise FileNotFoundError(
        f"--resume_from_checkpoint {resume_from_checkpoint!r} is not a checkpoint folder: pass a "
        f"`checkpoint-<step>` folder (or its name inside --output_dir) or 'latest'."
    )


def checkpoint_step(path: str) -> int:
    """The optimiser step a checkpoint was saved at."""
    state_file = os.path.join(path, TRAINING_STATE_FILE)
    if os.path.isfile(state_file):
        with open(state_file) as handle:
            return int(json.load(handle)["global_step"])
    match = CHECKPOINT_PATTERN.match(os.path.basename(os.path.normpath(path)))
    if match is None:
        raise ValueError(
            f"checkpoint {path!r} has no {TRAINING_STATE_FILE} and no step in its name: "
            "pass a checkpoint-<step> folder."
        )
    return int(match.group(1))


def resume(accelerator, output_dir: str, resume_from_checkpoint: str | None) -> int:
    """Load the state of the checkpoint `--resume_from_checkpoint` names (if any) and return its step (else 0)."""
    checkpoint = resolve_checkpoint(output_dir, resume_from_checkpoint)
    if resume_from_checkpoint and checkpoint is None:
        logger.info(f"No checkpoint in {output_dir!r}: starting a new run.")
    if checkpoint is None:
        return 0
    logger.info(f"Resuming from {checkpoint}")
    accelerator.load_state(checkpoint)
    return checkpoint_step(checkpoint)


def open_train_log(accelerator, output_dir: str, global_step: int) -> str:
    """`train_log.jsonl` of `output_dir`, keeping only the lines up to `global_step` (what a resumed run has not
    redone); returns its path."""
    log_path = os.path.join(output_dir, "train_log.jsonl")
    if accelerator.is_main_process:
        kept = []
        if global_step > 0 and os.path.isfile(log_path):  # drop what was logged after the checkpoint
            with open(log_path) as handle:
                kept = [line for line in handle if line.strip() and json.loads(line)["step"] <= global_step]
        with open(log_path, "w") as handle:
            handle.writelines(kept)
    return log_path


def save_pretrained_atomically(output_dir: str, *components) -> None:
    """`save_pretrained` every component (model, processor, ...) into a temporary folder, then move the files
    into `output_dir`: the folder never holds half a model."""
    tmp_dir = os.path.join(output_dir, "tmp-final")
    if os.path.isdir(tmp_dir):
        shutil.rmtree(tmp_dir)
    for component in components:
        component.save_pretrained(tmp_dir)
    for name in os.listdir(tmp_dir):
        target = os.path.join(output_dir, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(os.path.join(tmp_dir, name), target)
    os.rmdir(tmp_dir)


def is_sharded(accelerator) -> bool:
    """Whether each process holds only a shard of the prepared models' weights (FSDP)."""
    return accelerator.distributed_type == DistributedType.FSDP


def rebuild_with_weights(model, state_dict: dict):
    """A copy of the diffusers or transformers `model`, built on the CPU from its configuration, holding
    `state_dict` (all its weights, e.g. gathered from FSDP's shards); every key must match."""
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        copy = type(model)._from_config(model.config)
    elif hasattr(type(model), "from_config") and hasattr(model, "config"):  # a diffusers ModelMixin
        copy = type(model).from_config(model.config)
    else:
        raise TypeError(f"{type(model).__name__} has no configuration to rebuild it from; only diffusers and "
                        "transformers models can be saved from FSDP shards.")  # fmt: skip
    copy.load_state_dict(state_dict, strict=True)
    return copy


def whole_models(accelerator, model, names=("",)) -> list:
    """The trained `model`'s parts `names` (submodule paths, "" for the model itself), unwrapped and with all their
    weights, for `save_pretrained` on the main process. Every process must call it.

    Under DDP, DeepSpeed ZeRO-2 or one process they are the unwrapped model's own submodules. Under FSDP each process
    holds a shard of every weight: `accelerator.get_state_dict` gathers them (a collective) to the main process,
    which gets copies of the parts built from their configurations (`rebuild_with_weights`); the other processes get
    `None`s.
    """
    unwrapped = accelerator.unwrap_model(model)
    parts = [unwrapped.get_submodule(name) for name in names]
    if not is_sharded(accelerator):
        return parts
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return [None] * len(parts)
    copies = []
    for name, part in zip(names, parts, strict=True):
        prefix = f"{name}." if name else ""
        own = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        copies.append(rebuild_with_weights(part, own))
    return copies


def full_tensors(tensors) -> list:
    """Whole tensors from FSDP 2's sharded ones (`DTensor.full_tensor`, a collective: every process calls it); other
    tensors as they are."""
    from torch.distributed.tensor import DTensor

    return [t.full_tensor() if isinstance(t, DTensor) else t for t in tensors]


def shard_like(tensors, params) -> list:
    """Whole `tensors` split between the processes as `params` are (FSDP 2's `DTensor`s); as they are for plain
    parameters. The inverse of `full_tensors`."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    return [
        distribute_tensor(t.to(p.device), p.device_mesh, p.placements) if isinstance(p, DTensor) else t.to(p.device)
        for t, p in zip(tensors, params, strict=True)
    ]


def freeze_module(module):
    """Fix `module`'s weights and keep it in eval mode for good: `model.train()` (which trainers call before every
    step) leaves it alone, so batch-norm statistics neither drift nor switch to per-batch ones (a ResNet tower
    trained in one mode and scored by a DPO reference model in the other would see different features)."""
    module.requires_grad_(False)
    module.eval()
    module.train = lambda mode=True: module  # the instance attribute shadows nn.Module.train
    return module


__all__ = [
    "CHECKPOINT_PATTERN",
    "TRAINING_STATE_FILE",
    "checkpoint_step",
    "freeze_module",
    "full_tensors",
    "is_sharded",
    "list_checkpoints",
    "open_train_log",
    "rebuild_with_weights",
    "resolve_checkpoint",
    "resume",
    "save_checkpoint",
    "save_pretrained_atomically",
    "shard_like",
    "whole_models",
]
