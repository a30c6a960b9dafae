"""Pre-train the reasoner's vision tower on single frames of the procedural corpus (a stage before stage 1.1).

Real vision-language models start from a pre-trained image encoder (CLIP, SigLIP, InternViT); none can be
downloaded here, and a tower trained from scratch only through the language model's loss stays blind for
hundreds of SFT steps (measured: the tiny reasoner answered at the class prior after 600 steps with either a
ViT or a ConvNeXt tower, while the same ConvNeXt trained directly on frames counts characters at 73 % after 100
steps). So the tower is first trained as an image classifier on what the corpus knows about every frame: how many
characters are visible and, for each of the left / middle / right positions, whether a character is there, its
gender, age and emotion and whether its mouth is open in that frame. The classifier heads are dropped; the tower is
saved with `save_pretrained` and `examples/train_sft.py --vision_tower_name_or_path` starts from it.

```bash
python examples/pretrain_vision_tower.py --dataset corpus --dataset_config_name level1 level2 \
    --output_dir runs/vision_tower --max_train_steps 600
```
"""

from __future__ import annotations

import argparse
import json
import os

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from datasets import concatenate_datasets, load_dataset
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel

from deepdubber_hf.data.schema import AGES, EMOTIONS, GENDERS
from deepdubber_hf.reasoner.configuration_reasoner import TINY_VISION_CONFIG
from deepdubber_hf.reasoner.processing_reasoner import load_video_frames, sample_frame_indices
from deepdubber_hf.training_utils import save_pretrained_atomically

NUM_SLOTS = 3  # left, middle, right
MOUTH_OPEN = 0.2  # openness above which a mouth counts as open


def frame_targets(row, frame_index: int) -> dict:
    """Per-frame labels: visible count, and per horizontal slot presence, gender, age, emotion, mouth open."""
    visible = [(i, c) for i, c in enumerate(row["characters"]) if c["visible"] and c["bbox"]]
    width = row["width"]
    slots = {k: None for k in range(NUM_SLOTS)}
    for index, character in visible:
        centre = (character["bbox"][0] + character["bbox"][2]) / 2
        slots[min(NUM_SLOTS - 1, int(centre / width * NUM_SLOTS))] = (index, character)
    targets = {"count": min(len(visible), 3)}
    for k, entry in slots.items():
        present = entry is not None
        targets[f"present{k}"] = int(present)
        index, character = entry if present else (0, None)
        targets[f"gender{k}"] = GENDERS.index(character["gender"]) if present else -100
        targets[f"age{k}"] = AGES.index(character["age"]) if present else -100
        targets[f"emotion{k}"] = EMOTIONS.index(character["emotion"]) if present else -100
        openness = row["mouth_openness"][index][frame_index] if present else 0.0
        targets[f"mouth{k}"] = int(openness > MOUTH_OPEN) if present else -100
    return targets


class FrameDataset(torch.utils.data.Dataset):
    def __init__(self, dataset, num_frames: int, image_size: int):
        # The columns it reads: whole rows would decode every clip's audio too.
        self.dataset = dataset.select_columns(["video", "characters", "mouth_openness", "width"])
        self.num_frames, self.image_size = num_frames, image_size

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        row = self.dataset[index]
        frames = load_video_frames(row["video"], self.num_frames)
        indices = sample_frame_indices(len(row["mouth_openness"][0]) if row["mouth_openness"] else 1, self.num_frames)
        pixels = F.interpolate(frames.float(), size=(self.image_size,) * 2, mode="bilinear", antialias=True)
        pixels = pixels / 127.5 - 1.0  # the reasoner processor's normalisation (mean 0.5, std 0.5)
        return pixels.to(torch.float16), [frame_targets(row, i) for i in indices]


HEADS = {"count": 4, **{f"{name}{k}": n for k in range(NUM_SLOTS) for name, n in
                        (("present", 2), ("gender", 2), ("age", 4), ("emotion", 5), ("mouth", 2))}}  # fmt: skip


class FrameClassifier(torch.nn.Module):
    """The tower, its feature grid pooled to the whole frame and to three horizontal slots, and linear heads."""

    def __init__(self, tower, width: int):
        super().__init__()
        self.tower = tower
        self.heads = torch.nn.ModuleDict({name: torch.nn.Linear(width, n) for name, n in HEADS.items()})

    def forward(self, pixel_values):
        grid = self.tower(pixel_values=pixel_values).last_hidden_state  # (n, c, h, w)
        if grid.ndim == 3:  # a ViT's (n, p, c)
            side = int(grid.shape[1] ** 0.5)
            grid = grid.transpose(1, 2).reshape(grid.shape[0], -1, side, side)
        whole = grid.mean((2, 3))
        slots = F.adaptive_avg_pool2d(grid, (1, NUM_SLOTS)).flatten(2)  # (n, c, 3)
        logits = {"count": self.heads["count"](whole)}
        for name in HEADS:
            if name != "count":
                logits[name] = self.heads[name](slots[..., int(name[-1])])
        return logits


def parse_args(input_args=None):
    parser = argparse.ArgumentParser(description="Pre-train the reasoner's vision tower on labelled frames.")
    parser.add_argument("--dataset", type=str, required=True)
    parser.add_argument("--dataset_config_name", type=str, nargs="*", default=None)
    parser.add_argument("--split", type=str, default="train")
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--vision_model_type", type=str, default="convnextv2")
    parser.add_argument("--num_frames", type=int, default=4, help="Frames per clip per pass.")
    parser.add_argument("--batch_size", type=int, default=16, help="Clips per batch (times --num_frames frames).")
    parser.add_argument("--max_train_steps", type=int, default=600)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--dataloader_num_workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(input_args)


def main(args):
    torch.manual_seed(args.seed)
    datasets.utils.logging.set_verbosity_warning()
    os.makedirs(args.output_dir, exist_ok=True)
    parts = [load_dataset(args.dataset, name, split=args.split) for name in args.dataset_config_name or [None]]
    dataset = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    for column in ("video", "characters", "mouth_openness", "width"):
        if column not in dataset.column_names:
            raise ValueError(f"column {column!r} is missing from --dataset {args.dataset!r}: use the procedural corpus.")
    config = AutoConfig.for_model(args.vision_model_type, **TINY_VISION_CONFIG)
    tower = AutoModel.from_config(config)
    model = FrameClassifier(tower, config.hidden_sizes[-1] if hasattr(config, "hidden_sizes") else config.hidden_size)
    frames = FrameDataset(dataset, args.num_frames, config.image_size)
    loader = torch.utils.data.DataLoader(
        frames, batch_size=None, num_workers=args.dataloader_num_workers, shuffle=False
    )
    cache = list(tqdm(loader, desc="Decoding frames", unit="clip"))  # (pixels, targets) per clip
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.learning_rate, total_steps=args.max_train_steps)
    rng = np.random.default_rng(args.seed)
    log = []
    for step in tqdm(range(args.max_train_steps), desc="Steps"):
        chosen = [cache[i] for i in rng.integers(len(cache), size=args.batch_size)]
        pixels = torch.cat([c[0] for c in chosen]).float()
        targets = [t for c in chosen for t in c[1]]
        logits = model(pixels)
        losses = {name: F.cross_entropy(logits[name], torch.tensor([t[name] for t in targets]), ignore_index=-100)
                  for name in HEADS}  # fmt: skip
        loss = sum(value for value in losses.values() if torch.isfinite(value))
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        log.append({"step": step + 1, "loss": loss.item()})
    with open(os.path.join(args.output_dir, "pretrain_log.jsonl"), "w") as handle:
        handle.writelines(json.dumps(entry) + "\n" for entry in log)
    save_pretrained_atomically(args.output_dir, tower)
    print(f"saved the vision tower to {args.output_dir} (final loss {np.mean([e['loss'] for e in log[-20:]]):.3f})")


if __name__ == "__main__":
    main(parse_args())
