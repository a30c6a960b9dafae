"""Stage 1.2 of DeepDubber (§3.2.2, eq. 6–13): Mixed Preference Optimization of the SFT reasoner with the format
and outcome rewards.

The pairs come from `examples/build_preference_pairs.py` (the SFT model's own samples, scored by the rule-based
rewards). The reference policy π_0 is the SFT model itself. Every trl `DPOConfig` option is a flag (`--beta`,
`--learning_rate`, `--per_device_train_batch_size`, `--max_steps`, `--save_steps`, ...), plus the MPO weights
`--preference_weight --quality_weight --generation_weight --format_weight --outcome_weight` and `--reward_shift`.

The tiny default on this machine's CPU:

```bash
accelerate launch examples/train_mpo.py --model_name_or_path runs/reasoner_sft --dataset runs/mpo_pairs \
    --output_dir runs/reasoner_mpo --per_device_train_batch_size 4 --num_train_epochs 1 --learning_rate 1e-5 \
    --lr_scheduler_type constant --use_cpu --bf16 false --report_to none
```

Build the pairs with `--on_policy` (both sides sampled from the SFT model): with the reference annotation as the
chosen side of most pairs, 2 epochs at 5e-5 collapsed the tiny reasoner (27.5 % scene accuracy, 42.5 %
well-formed; see benchmarks/RESULTS.md).

`--use_lora` trains LoRA adapters through peft (the reference is then the model with the adapters disabled);
`--resume_from_checkpoint latest` continues a stopped run from its last `checkpoint-*`. The output folder holds
the MPO reasoner and its processor (adapters merged), loadable like the SFT one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import datasets
import torch
from datasets import load_from_disk
from transformers import AutoModelForImageTextToText, AutoProcessor, HfArgumentParser
from transformers.trainer_utils import get_last_checkpoint

import deepdubber_hf.reasoner  # noqa: F401  (registers the reasoner with the Auto classes)
from deepdubber_hf.reasoner.mpo import MPO_LABEL_COLUMNS, MPOConfig, MPOTrainer
from deepdubber_hf.training_utils import freeze_module, save_pretrained_atomically


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(metadata={"help": "The SFT reasoner folder (model + processor)."})
    dataset: str = field(metadata={"help": "The preference pairs folder written by build_preference_pairs.py."})
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (peft) instead of all weights."})
    freeze_vision_tower: bool = field(
        default=False, metadata={"help": "Keep the vision tower's weights and batch-norm statistics fixed."}
    )
    lora_rank: int = field(default=16)
    lora_alpha: int = field(default=32)
    lora_dropout: float = field(default=0.05)
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


def load_pairs(path: str):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--dataset {path!r} is not a folder: build it with examples/build_preference_pairs.py.")
    dataset = load_from_disk(path)
    missing = [c for c in ("images", "prompt", "chosen", "rejected", *MPO_LABEL_COLUMNS) if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"--dataset {path!r} lacks the columns {missing}: build it with examples/build_preference_pairs.py."
        )
    return dataset


def main(script_args: ScriptArguments, training_args: MPOConfig) -> None:
    datasets.utils.logging.set_verbosity_warning()
    if not os.path.isdir(script_args.model_name_or_path):
        raise FileNotFoundError(
            f"--model_name_or_path {script_args.model_name_or_path!r} is not a folder: pass the output of "
            "examples/train_sft.py."
        )
    dataset = load_pairs(script_args.dataset)
    processor = AutoProcessor.from_pretrained(script_args.model_name_or_path)
    model = AutoModelForImageTextToText.from_pretrained(script_args.model_name_or_path, dtype=torch.float32)
    if script_args.freeze_vision_tower:
        freeze_module(model.get_submodule("model.vision_tower"))
    peft_config = ref_model = None
    if script_args.use_lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=script_args.lora_rank,
            lora_alpha=script_args.lora_alpha,
            lora_dropout=script_args.lora_dropout,
            target_modules=script_args.lora_target_modules,
        )
    else:  # π_0: a frozen copy of the SFT model
        ref_model = AutoModelForImageTextToText.from_pretrained(script_args.model_name_or_path, dtype=torch.float32)
    trainer = MPOTrainer(
        model=model,
        ref_model=ref_model,
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
    )
    checkpoint = training_args.resume_from_checkpoint  # a checkpoint folder, or `latest`
    if checkpoint == "latest":
        checkpoint = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
    trainer.train(resume_from_checkpoint=checkpoint)

    # Save the merged model and the processor through a temporary folder: the output folder never holds half a model.
    if trainer.accelerator.is_main_process:
        final = trainer.accelerator.unwrap_model(trainer.model)
        if script_args.use_lora:
            final = final.merge_and_unload()
        save_pretrained_atomically(training_args.output_dir, final, processor)
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    parser = HfArgumentParser((ScriptArguments, MPOConfig))
    main(*parser.parse_args_into_dataclasses())
