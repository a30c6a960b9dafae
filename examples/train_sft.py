"""Stage 1.1 of DeepDubber (§3.2.1, eq. 4–5): supervised fine-tuning of the video reasoner.

The reasoner reads the sampled frames of a clip (`Frame{i}: <image>` lines) and an instruction and learns to
write the response: in `--mode cot` the four-section chain of thought of §4.1 ("Reasoning" in Table 2 of the
paper), in `--mode qa` the direct answer to the question ("QA"). The loss is the next-token cross-entropy of the
response tokens only.

With no `--model_name_or_path` a new reasoner of `--model_config tiny` is built, with a byte-level BPE tokenizer
trained here on the dataset's responses. With a folder of a `DeepDubberReasonerForConditionalGeneration` (or of
another transformers vision-language model with its processor) that model is fine-tuned; `--use_lora` trains
LoRA adapters through peft instead of all weights.

Any `datasets` dataset in the project's schema works (a `video` column, `cot` and `answer` columns): the
procedural corpus (`deepdubber generate-data`), or a real corpus exported with `dataset_scripts/`.

The tiny default on this machine's CPU (two processes of gloo DDP, one thread each), starting from a vision tower pre-trained by `examples/pretrain_vision_tower.py`
(a tower trained from scratch through this loss alone stays blind for hundreds of steps):

```bash
ACCELERATE_USE_CPU=1 OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 examples/train_sft.py \
    --dataset corpus --dataset_config_name level1 level2 --output_dir runs/reasoner_sft \
    --model_config tiny --vision_tower_name_or_path runs/vision_tower --freeze_vision_tower --mode cot \
    --train_batch_size 6 --max_train_steps 1000 --learning_rate 1e-3 --lr_warmup_steps 80
```

Continue where a run stopped with `--resume_from_checkpoint latest`. The output folder ends up with the model
and its processor (loadable with `AutoModelForImageTextToText` / `AutoProcessor` after
`import deepdubber_hf.reasoner`), `checkpoint-{step}/` folders, `train_log.jsonl` and `logs/`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os

import datasets
import torch
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from datasets import concatenate_datasets, load_dataset, load_from_disk
from tqdm.auto import tqdm
from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor, get_scheduler

from deepdubber_hf.reasoner.prompts import COT_INSTRUCTION, QA_QUESTION
from deepdubber_hf.training_utils import (
    freeze_module,
    is_sharded,
    open_train_log,
    resume,
    save_checkpoint,
    save_pretrained_atomically,
    whole_models,
)
from deepdubber_hf.reasoner import (
    DeepDubberReasonerConfig,
    DeepDubberReasonerForConditionalGeneration,
    DeepDubberReasonerProcessor,
    build_messages,
    load_video_frames,
    train_reasoner_tokenizer,
)

logger = get_logger(__name__)

RESPONSE_COLUMNS = {"cot": "cot", "qa": "answer"}


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


def load_reasoning_dataset(args) -> datasets.Dataset:
    """The `--dataset_split` of every `--dataset_config_name` of `--dataset`, concatenated, columns checked."""
    path = args.dataset
    parts = []
    for config_name in args.dataset_config_name or [None]:
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "state.json")):
            parts.append(load_from_disk(path))
            break
        if not os.path.exists(path) and (path.startswith((".", "/", "~")) or path.count("/") > 1):
            raise FileNotFoundError(f"--dataset {path!r} does not exist: pass a dataset folder or a Hub dataset id.")
        parts.append(load_dataset(path, config_name, split=args.dataset_split))
    dataset = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    for column in (args.video_column, RESPONSE_COLUMNS[args.mode]):
        if column not in dataset.column_names:
            raise ValueError(
                f"column {column!r} is not in --dataset {path!r} (its columns are {dataset.column_names}); "
                "train on a dataset in the DeepDubber schema or pass --video_column."
            )
    if args.max_train_samples is not None:
        dataset = dataset.select(range(min(args.max_train_samples, len(dataset))))
    return dataset


class ClipFrames(torch.utils.data.Dataset):
    """Decodes the sampled frames of each clip (once: the training loop reads them from memory)."""

    def __init__(self, dataset, video_column: str, num_frames: int):
        # Only the video column: reading whole rows would decode every clip's audio too.
        self.dataset, self.video_column = dataset.select_columns([video_column]), video_column
        self.num_frames = num_frames

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return load_video_frames(self.dataset[index][self.video_column], self.num_frames)


def decode_all_frames(dataset, args, show_progress: bool) -> list:
    loader = torch.utils.data.DataLoader(
        ClipFrames(dataset, args.video_column, args.num_frames),
        batch_size=None,
        num_workers=args.dataloader_num_workers,
    )
    return [frames for frames in tqdm(loader, desc="Decoding frames", unit="clip", disable=not show_progress)]


class ReasoningCollator:
    """Chat-formats each (frames, response) pair and masks everything but the response out of the labels."""

    def __init__(self, processor, mode: str, max_length: int | None = None):
        self.processor, self.mode, self.max_length = processor, mode, max_length

    def __call__(self, items: list) -> dict:
        frames = [item["frames"] for item in items]
        images = [list(f) for f in frames]
        prompts = [self.processor.apply_chat_template(build_messages(len(f), self.mode), add_generation_prompt=True) for f in frames]
        texts = [
            self.processor.apply_chat_template(build_messages(len(f), self.mode, item["response"]))
            for f, item in zip(frames, items)
        ]
        batch = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        # The prompt's tokens are a prefix of the whole chat's: their count is where the response starts.
        prompt_lengths = [
            len(ids) for ids in self.processor(text=prompts, images=images, padding=False)["input_ids"]
        ]
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for row, length in enumerate(prompt_lengths):
            labels[row, :length] = -100
        batch["labels"] = labels
        if self.max_length is not None and batch["input_ids"].shape[1] > self.max_length:
            raise ValueError(
                f"a training example has {batch['input_ids'].shape[1]} tokens, more than --max_length "
                f"{self.max_length}: raise --max_length or lower --num_frames."
            )
        return batch


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------


def build_model_and_processor(args, dataset):
    """A new tiny reasoner with a tokenizer trained on the responses, or the model of `--model_name_or_path`."""
    if args.model_name_or_path:
        if not os.path.isdir(args.model_name_or_path) and os.path.exists(os.path.dirname(args.model_name_or_path)):
            raise FileNotFoundError(f"--model_name_or_path {args.model_name_or_path!r} is not a model folder.")
        processor = AutoProcessor.from_pretrained(args.model_name_or_path)
        model = AutoModelForImageTextToText.from_pretrained(args.model_name_or_path, dtype=torch.float32)
        return model, processor
    if args.model_config != "tiny":
        raise ValueError(f"--model_config {args.model_config!r} is unknown; use 'tiny' or pass --model_name_or_path.")
    # The responses, the instructions and the frame labels of the prompt (so `Frame3:` is one or two tokens).
    frame_labels = [f"\nFrame{i}: " for i in range(1, args.num_frames + 1)] * 100
    texts = list(dataset["cot"]) + list(dataset["answer"]) + [COT_INSTRUCTION, QA_QUESTION] + frame_labels
    tokenizer = train_reasoner_tokenizer(texts, vocab_size=args.tokenizer_vocab_size)
    config = DeepDubberReasonerConfig.tiny(
        vocab_size=len(tokenizer),
        num_frames=args.num_frames,
        text_config={
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
    )
    config.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision_tower = None
    if args.vision_tower_name_or_path:  # a tower from examples/pretrain_vision_tower.py (or any matching one)
        vision_tower = AutoModel.from_pretrained(args.vision_tower_name_or_path, dtype=torch.float32)
        config.vision_config = vision_tower.config
    config.pooled_regions = args.pooled_regions
    config.temporal_pooling = args.temporal_pooling
    config.scale_factor = args.scale_factor or max(1, config.vision_config.image_size // config.vision_stride // 2)
    config.validate_architecture()
    processor = DeepDubberReasonerProcessor.from_tokenizer(
        tokenizer,
        image_size=config.vision_config.image_size,
        num_frames=args.num_frames,
        image_seq_length=config.image_seq_length,
    )
    model = DeepDubberReasonerForConditionalGeneration(config)
    if vision_tower is not None:
        model.model.vision_tower.load_state_dict(vision_tower.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, processor


def add_lora(args, model):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.lora_target_modules,
    )
    model = get_peft_model(model, config)
    model.print_trainable_parameters()
    return model


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="DeepDubber stage 1.1: supervised fine-tuning of the reasoner.")
    parser.add_argument("--dataset", type=str, required=True, help="Dataset folder or Hub id in the DeepDubber schema.")
    parser.add_argument(
        "--dataset_config_name", type=str, nargs="*", default=None, help="Configs to train on, e.g. `level1 level2`."
    )
    parser.add_argument("--dataset_split", type=str, default="train")
    parser.add_argument("--video_column", type=str, default="video")
    parser.add_argument("--max_train_samples", type=int, default=None, help="Train on the first N clips only.")
    parser.add_argument(
        "--mode", type=str, default="cot", choices=("cot", "qa"),
        help="`cot`: learn the four-section reasoning; `qa`: learn the direct answer (Table 2's two SFT rows).",
    )  # fmt: skip
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--model_name_or_path", type=str, default=None, help="A reasoner or VLM folder to fine-tune.")
    parser.add_argument("--model_config", type=str, default="tiny", help="Size of a new reasoner (`tiny`).")
    parser.add_argument("--tokenizer_vocab_size", type=int, default=1024)
    parser.add_argument(
        "--vision_tower_name_or_path", type=str, default=None,
        help="Start a new reasoner's vision tower from this folder (examples/pretrain_vision_tower.py).",
    )  # fmt: skip
    parser.add_argument(
        "--freeze_vision_tower", action="store_true", help="Keep the vision tower's weights fixed (a pre-trained one)."
    )
    parser.add_argument("--num_frames", type=int, default=10, help="Frames sampled per clip (first, last, between).")
    parser.add_argument(
        "--scale_factor", type=int, default=None,
        help="Pixel-shuffle factor of a new reasoner's projector; by default the tower's feature grid folds to 2 × 2 "
        "tokens per frame whatever its image size.",
    )
    parser.add_argument(
        "--pooled_regions", type=int, default=3,
        help="Vertical strips pooled into extra tokens per frame, besides the whole frame (0: none); see "
        "DeepDubberReasonerConfig.",
    )
    parser.add_argument(
        "--temporal_pooling", action=argparse.BooleanOptionalAction, default=True,
        help="Pooled tokens also read their region's mean and spread over the clip's frames (who talks); see "
        "DeepDubberReasonerConfig.",
    )
    parser.add_argument("--max_length", type=int, default=None, help="Refuse examples longer than this many tokens.")
    parser.add_argument("--use_lora", action="store_true", help="Train LoRA adapters (peft) instead of all weights.")
    parser.add_argument("--lora_rank", type=int, default=16)
    parser.add_argument("--lora_alpha", type=int, default=32)
    parser.add_argument("--lora_dropout", type=float, default=0.05)
    parser.add_argument(
        "--lora_target_modules", type=str, nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    parser.add_argument("--train_batch_size", type=int, default=8, help="Clips per process per batch.")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--num_train_epochs", type=int, default=10)
    parser.add_argument("--max_train_steps", type=int, default=None, help="Overrides --num_train_epochs.")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--lr_scheduler", type=str, default="cosine")
    parser.add_argument("--lr_warmup_steps", type=int, default=100)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=2)
    parser.add_argument("--resume_from_checkpoint", type=str, default=None, help="A checkpoint folder or `latest`.")
    parser.add_argument("--dataloader_num_workers", type=int, default=1)
    parser.add_argument("--mixed_precision", type=str, default="no", choices=("no", "fp16", "bf16"))
    parser.add_argument("--report_to", type=str, default="tensorboard")
    parser.add_argument("--logging_dir", type=str, default="logs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(input_args)
    if args.train_batch_size < 1:
        raise ValueError(f"--train_batch_size must be at least 1, got {args.train_batch_size}.")
    return args


def main(args: argparse.Namespace) -> None:
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
        ),
        # Vision towers carry heads the reasoner does not use (ConvNeXt's pooled-output norm, SigLIP's head).
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    if not accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
    set_seed(args.seed)
    if args.use_lora and is_sharded(accelerator):
        raise ValueError("--use_lora under FSDP: the adapters cannot be merged from FSDP's shards at the end. Train "
                         "LoRA with configs/accelerate/ddp.yaml or deepspeed_zero2.yaml (a LoRA run's optimiser state "
                         "is small), or drop --use_lora.")  # fmt: skip
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    accelerator.wait_for_everyone()

    # 1. Data, model and processor (the tokenizer is trained the same way on every process: no file race).
    dataset = load_reasoning_dataset(args)
    with accelerator.main_process_first():
        model, processor = build_model_and_processor(args, dataset)
    if args.freeze_vision_tower:  # LLaVA's recipe with a pre-trained encoder: only the projector and LM learn
        freeze_module(model.get_submodule("model.vision_tower"))
    if args.use_lora:
        model = add_lora(args, model)
    logger.info(f"Training {type(model).__name__} of {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params.")
    responses = list(dataset[RESPONSE_COLUMNS[args.mode]])
    empty = [i for i, text in enumerate(responses) if not isinstance(text, str) or not text.strip()]
    if empty:
        raise ValueError(f"rows {empty[:10]} of --dataset have an empty {RESPONSE_COLUMNS[args.mode]!r} column.")
    frames = decode_all_frames(dataset, args, accelerator.is_local_main_process)
    items = [{"frames": f, "response": r} for f, r in zip(frames, responses)]
    train_dataloader = torch.utils.data.DataLoader(
        items,
        batch_size=args.train_batch_size,
        shuffle=True,
        collate_fn=ReasoningCollator(processor, args.mode, args.max_length),
        num_workers=0,
    )

    # 2. Optimiser and schedule (the prepared scheduler steps once per process per optimiser step).
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=args.learning_rate, weight_decay=args.weight_decay
    )
    num_update_steps_per_epoch = math.ceil(
        math.ceil(len(items) / (args.train_batch_size * accelerator.num_processes)) / args.gradient_accumulation_steps
    )
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * num_update_steps_per_epoch
    num_train_epochs = math.ceil(args.max_train_steps / num_update_steps_per_epoch)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, lr_scheduler
    )

    # 3. Resume.
    global_step = resume(accelerator, args.output_dir, args.resume_from_checkpoint)
    first_epoch = global_step // num_update_steps_per_epoch
    resume_batches = (global_step % num_update_steps_per_epoch) * args.gradient_accumulation_steps
    log_path = open_train_log(accelerator, args.output_dir, global_step)
    if accelerator.is_main_process:
        tracker_config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in vars(args).items()}
        accelerator.init_trackers("train_sft", config=tracker_config)

    def export(folder):  # a loadable reasoner in every checkpoint, to evaluate a run while it trains
        accelerator.unwrap_model(model).save_pretrained(os.path.join(folder, "reasoner"))  # with LoRA: the adapters
        processor.save_pretrained(os.path.join(folder, "reasoner"))

    if is_sharded(accelerator):  # the main process holds a shard: its checkpoints resume, the final folder loads
        export = None

    # 4. Train.
    logger.info(
        f"{len(items)} clips, {num_train_epochs} epochs, {args.max_train_steps} optimiser steps, "
        f"{accelerator.num_processes} processes, from step {global_step}."
    )
    progress_bar = tqdm(
        range(args.max_train_steps), initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    step_losses = []
    for epoch in range(first_epoch, num_train_epochs):
        if global_step >= args.max_train_steps:
            break
        model.train()
        if hasattr(train_dataloader, "set_epoch"):
            train_dataloader.set_epoch(epoch)
        dataloader = train_dataloader
        if epoch == first_epoch and resume_batches > 0:
            dataloader = accelerator.skip_first_batches(train_dataloader, resume_batches)
        for batch in dataloader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            step_losses.append(accelerator.gather(loss.detach()).mean().item())
            if accelerator.sync_gradients:
                global_step += 1
                progress_bar.update(1)
                logs = {"loss": sum(step_losses) / len(step_losses), "lr": lr_scheduler.get_last_lr()[0]}
                progress_bar.set_postfix(**logs)
                accelerator.log(logs, step=global_step)
                if accelerator.is_main_process:
                    with open(log_path, "a") as handle:
                        handle.write(json.dumps({"step": global_step, **logs}) + "\n")
                step_losses = []
                if global_step % args.checkpointing_steps == 0:
                    save_checkpoint(
                        accelerator, args.output_dir, global_step, args.checkpoints_total_limit, export=export
                    )
                if global_step >= args.max_train_steps:
                    break
    progress_bar.close()

    # 5. Save the model (LoRA adapters merged) and its processor.
    accelerator.wait_for_everyone()
    (unwrapped,) = whole_models(accelerator, model)  # every process: under FSDP the weights are gathered
    if accelerator.is_main_process:
        if args.use_lora:
            unwrapped = unwrapped.merge_and_unload()
        save_pretrained_atomically(args.output_dir, unwrapped, processor)
        logger.info(f"Saved the reasoner and its processor to {args.output_dir}")
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
