"""Pre-train the reasoner's vision tower on single frames of the procedural corpus (a stage before stage 1.1).

Real vision-language models start from a pre-trained image encoder (CLIP, SigLIP, InternViT); none can be
downloaded here, and a tower trained from scratch only through the language model's loss stays blind for
hundreds of SFT steps (measured: the tiny reasoner answered at the class prior after 600 steps with either a
ViT or a ConvNeXt tower, while the same ConvNeXt trained directly on frames counts characters at 73 % after 100
steps). So the tower is first trained as an image classifier on what the corpus knows about every frame: how many
characters are visible and, for each of the left / middle / right positions, whether a character is there, its
gender, age and emotion and whether its mouth is open in that frame. The classifier heads are dropped; the tower is
saved with `save_pretrained` and `examples/train_sft.py --vision_tower_name_or_path` starts from it.

After training, every head is scored on the frames of `--eval_split` (`head_accuracies.json`, beside the share of
the commonest label: a head that learned nothing scores exactly that). `--head_weight mouth=4` weighs a kind of head
up (or out, with 0). `pretrain_log.jsonl` has the loss of each kind of head at every step.

```bash
python examples/pretrain_vision_tower.py --dataset corpus --dataset_config_name level1 level2 \
    --output_dir runs/vision_tower --max_train_steps 1500 --image_size 192
```

At 192 × 192 (the corpus's frames are 160–192 pixels wide) every mouth head scores 1–9 points higher than at the
default 128 and the run takes about three times as long (benchmarks/RESULTS.md). `head_accuracies.json` also has
`talking`: whether the mouth heads, over the reasoner's own frames, tell which visible characters talk.

`--frame_sampling reasoner --num_frames 10` shows the tower the reasoner's own ten frames of each clip and adds a
per-clip head per slot, "does this character talk?", reading the slot's mean and spread over the clip's frames:
what the reasoner's pooled tokens carry (`temporal_pooling`). Per-frame mouth heads told who talks from those frames
for 69 % of the held-out characters (always giving the commoner answer: 63 %); the talking heads, for 89 %
(benchmarks/RESULTS.md, "Talking heads").

The default tower is a small ResNet (`TINY_RESNET_VISION_CONFIG`), not the ConvNeXt-V2 the reasoner's tiny config
defaults to: measured at 128 × 128 (benchmarks/RESULTS.md), the ConvNeXt's mouth heads end within 1–4 points of
their commonest label after 2500 steps, the ResNet's 5–12 points above after 1500, and an open mouth is what tells
a monologue from a narration.
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
from deepdubber_hf.reasoner.configuration_reasoner import TINY_VISION_CONFIG, TINY_VISION_CONFIGS
from deepdubber_hf.reasoner.modeling_reasoner import clip_statistics, pool_regions
from deepdubber_hf.reasoner.processing_reasoner import load_video_frames, sample_frame_indices
from deepdubber_hf.training_utils import save_pretrained_atomically

NUM_SLOTS = 3  # left, middle, right
MOUTH_OPEN = 0.2  # openness above which a mouth counts as open
REASONER_FRAMES = 10  # frames the reasoner samples per clip (DeepDubberReasonerConfig.num_frames)


def frame_targets(row, frame_index: int) -> dict:
    """Per-frame labels: visible count, and per horizontal slot presence, gender, age, emotion, mouth open."""
    visible = [(i, c) for i, c in enumerate(row["characters"]) if c["visible"] and c["bbox"]]
    slots = {k: None for k in range(NUM_SLOTS)}
    for index, character in visible:
        slots[slot_of(row, character)] = (index, character)
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


def clip_targets(row) -> dict:
    """Per-clip labels: per horizontal slot, whether its visible character talks in the clip."""
    targets = {f"talking{k}": -100 for k in range(NUM_SLOTS)}
    for character in row["characters"]:
        if character["visible"] and character["bbox"]:
            targets[f"talking{slot_of(row, character)}"] = int(bool(character["talking"]))
    return targets


class FrameDataset(torch.utils.data.Dataset):
    """`num_frames` frames of every clip with their labels, and the clip's own labels (who talks).

    `sampling="random"`: frames drawn at random (seeded by the clip's position), all different. `"reasoner"`: the
    frames the reasoner sees (`sample_frame_indices`: the first, the last and the rest evenly between), which the
    clip-level talking heads need, as they read the same statistics over the clip's frames as the reasoner does.
    (Random frames were the first choice: clips start and end in silence, so a clip's first and last frames show
    closed mouths; with ten frames these are two of them.)
    """

    def __init__(self, dataset, num_frames: int, image_size: int, seed: int = 0, sampling: str = "random"):
        # The columns it reads: whole rows would decode every clip's audio too.
        self.dataset = dataset.select_columns(["video", "characters", "mouth_openness", "width"])
        self.num_frames, self.image_size, self.seed, self.sampling = num_frames, image_size, seed, sampling

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        row = self.dataset[index]
        rng = np.random.default_rng([self.seed, index])
        chosen = []

        def pick(total: int) -> list:
            if self.sampling == "reasoner":
                chosen[:] = sample_frame_indices(total, self.num_frames)
            else:
                chosen[:] = sorted(rng.choice(total, size=min(total, self.num_frames), replace=False).tolist())
            return chosen

        frames = load_video_frames(row["video"], self.num_frames, indices=pick)
        pixels = to_pixels(frames, self.image_size)
        return pixels.to(torch.float16), [frame_targets(row, i) for i in chosen], clip_targets(row)


def to_pixels(frames: torch.Tensor, image_size: int) -> torch.Tensor:
    """`uint8` frames → the tower's input: resized square, normalised as the reasoner's processor does (mean 0.5,
    std 0.5)."""
    return F.interpolate(frames.float(), size=(image_size,) * 2, mode="bilinear", antialias=True) / 127.5 - 1.0


HEAD_SIZES = (("present", 2), ("gender", 2), ("age", 4), ("emotion", 5), ("mouth", 2), ("talking", 2))
HEADS = {"count": 4, **{f"{name}{k}": n for k in range(NUM_SLOTS) for name, n in HEAD_SIZES}}
KIND = {name: name.rstrip("012") for name in HEADS}  # a head's kind: its name without the slot
CLIP_HEADS = [name for name in HEADS if KIND[name] == "talking"]  # one label per clip, not per frame


class FrameClassifier(torch.nn.Module):
    """The tower, its feature grid pooled to the whole frame and to three horizontal slots, and linear heads.

    Each region is pooled by its mean and its maximum side by side: a mouth or an eyebrow fills one cell of the
    grid, and a mean over a whole third of the frame washes it out, while the maximum keeps a local detector's answer
    (the first towers, pooled by the mean only and shown first / last frames, left every mouth head at its
    commonest label). The reasoner's projector pools the same regions (`pooled_regions`), so what the heads read
    reaches its language model as is.

    Given `frames_per_clip`, the talking heads also answer per clip: each reads its slot's mean and standard
    deviation over the clip's frames, the statistics the reasoner's pooled tokens carry
    (`DeepDubberReasonerConfig.temporal_pooling`). A mouth that moves is what they are trained to find; per-frame
    mouth heads alone, read over the reasoner's ten frames, told who talks little better than always giving the
    commoner answer (benchmarks/RESULTS.md).
    """

    def __init__(self, tower, width: int):
        super().__init__()
        self.tower = tower
        self.heads = torch.nn.ModuleDict(
            {name: torch.nn.Linear((4 if name in CLIP_HEADS else 2) * width, n) for name, n in HEADS.items()}
        )

    def forward(self, pixel_values, frames_per_clip: int | None = None):
        grid = self.tower(pixel_values=pixel_values).last_hidden_state  # (n, c, h, w)
        if grid.ndim == 3:  # a ViT's (n, p, c)
            side = int(grid.shape[1] ** 0.5)
            grid = grid.transpose(1, 2).reshape(grid.shape[0], -1, side, side)
        pooled = pool_regions(grid, NUM_SLOTS)  # (n, 1 + 3, 2c): the whole frame, then the slots
        logits = {"count": self.heads["count"](pooled[:, 0])}
        for name in HEADS:
            if name != "count" and name not in CLIP_HEADS:
                logits[name] = self.heads[name](pooled[:, 1 + int(name[-1])])
        if frames_per_clip:
            # Every clip's mean and spread, from its first frame's row: (clips, 1 + 3, 4c).
            stats = clip_statistics(pooled, frames_per_clip)[::frames_per_clip, :, pooled.shape[-1] :]
            for name in CLIP_HEADS:
                logits[name] = self.heads[name](stats[:, 1 + int(name[-1])])
        return logits


def parse_args(input_args=None):
    parser = argparse.ArgumentParser(description="Pre-train the reasoner's vision tower on labelled frames.")
    parser.add_argument("--dataset", type=str, required=True)
    parser.add_argument("--dataset_config_name", type=str, nargs="*", default=None)
    parser.add_argument("--split", type=str, default="train")
    parser.add_argument(
        "--eval_split", type=str, default="test",
        help="Split whose frames measure each head's accuracy after training ('' to skip).",
    )
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument(
        "--vision_model_type", type=str, default="resnet", choices=sorted(TINY_VISION_CONFIGS),
        help="The tiny tower to train (its configuration is in deepdubber_hf.reasoner.configuration_reasoner); "
        "the ResNet learns every head better than the ConvNeXt (benchmarks/RESULTS.md).",
    )
    parser.add_argument(
        "--init_from", type=str, default=None,
        help="Go on from a tower this script saved (its configuration, image size included, replaces "
        "--vision_model_type and --image_size); the heads start afresh.",
    )
    parser.add_argument("--num_frames", type=int, default=4, help="Frames per clip per pass.")
    parser.add_argument(
        "--frame_sampling", type=str, default="random", choices=["random", "reasoner"],
        help="'random': --num_frames frames drawn at random per clip; 'reasoner': the frames the reasoner sees (pass "
        "--num_frames 10, the reasoner's num_frames), which also trains the per-clip talking heads on them.",
    )
    parser.add_argument(
        "--image_size", type=int, default=TINY_VISION_CONFIG["image_size"],
        help="Square input size of the tower (the reasoner's processor resizes frames to it).",
    )
    parser.add_argument("--batch_size", type=int, default=16, help="Clips per batch (times --num_frames frames).")
    parser.add_argument("--max_train_steps", type=int, default=1500)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument(
        "--head_weight", type=str, nargs="*", default=[], metavar="HEAD=WEIGHT",
        help="Loss weight of a kind of head (count, present, gender, age, emotion, mouth, talking; default 1 each), "
        "e.g. mouth=4; 0 leaves the kind out.",
    )
    parser.add_argument("--dataloader_num_workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(input_args)


def head_weights(specs: list) -> dict:
    """Loss weight per head from `--head_weight kind=weight` items (a kind covers all three slots' heads)."""
    kinds = set(KIND.values())
    weights = dict.fromkeys(HEADS, 1.0)
    for spec in specs:
        kind, _, value = spec.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if kind not in kinds or weight < 0:
            raise ValueError(f"--head_weight {spec!r}: expected KIND=WEIGHT with KIND in {sorted(kinds)} and WEIGHT >= 0.")
        weights.update({name: weight for name in HEADS if KIND[name] == kind})
    return weights


def load_split(args, split: str):
    try:
        parts = [load_dataset(args.dataset, name, split=split) for name in args.dataset_config_name or [None]]
    except ValueError as error:
        if split == args.eval_split and "split" in str(error).lower():
            raise ValueError(f"--dataset {args.dataset!r} has no {split!r} split ({error}); name another with "
                             "--eval_split, or pass --eval_split '' to skip the held-out scores.") from error  # fmt: skip
        raise
    dataset = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    for column in ("video", "characters", "mouth_openness", "width"):
        if column not in dataset.column_names:
            raise ValueError(f"column {column!r} is missing from --dataset {args.dataset!r}: use the procedural corpus.")
    return dataset


def decode(args, dataset, image_size: int, desc: str) -> list:
    """(pixels, per-frame targets) of every clip, decoded once by the data loader's workers."""
    loader = torch.utils.data.DataLoader(
        FrameDataset(dataset, args.num_frames, image_size, seed=args.seed, sampling=args.frame_sampling),
        batch_size=None, num_workers=args.dataloader_num_workers, shuffle=False,
    )
    return list(tqdm(loader, desc=desc, unit="clip"))


def stack(clips: list) -> tuple:
    """A batch of decoded clips: their frames' pixels, the per-frame targets of every frame and the per-clip ones."""
    pixels = torch.cat([clip[0] for clip in clips]).float()
    frame_heads = [name for name in HEADS if name not in CLIP_HEADS]
    targets = {name: torch.tensor([t[name] for clip in clips for t in clip[1]]) for name in frame_heads}
    targets.update({name: torch.tensor([clip[2][name] for clip in clips]) for name in CLIP_HEADS})
    return pixels, targets


def clip_length(args) -> int | None:
    """Frames per clip for the talking heads when every clip gives the reasoner's frames (else they are not trained)."""
    return args.num_frames if args.frame_sampling == "reasoner" else None


@torch.no_grad()
def head_accuracies(model, clips: list, batch_size: int, frames_per_clip: int | None = None) -> dict:
    """Per head over the labelled frames of `clips` (the clips themselves for the talking heads, scored only given
    `frames_per_clip`): accuracy (%), the share of its commonest label (%, what a head that learned nothing
    scores) and the number of frames (or clips)."""
    model.eval()
    correct, labels = dict.fromkeys(HEADS, 0), {name: [] for name in HEADS}
    for start in range(0, len(clips), batch_size):
        pixels, targets = stack(clips[start : start + batch_size])
        logits = model(pixels, frames_per_clip)
        for name in logits:
            labelled = targets[name] != -100
            correct[name] += (logits[name].argmax(-1)[labelled] == targets[name][labelled]).sum().item()
            labels[name] += targets[name][labelled].tolist()
    model.train()
    report = {}
    for name in HEADS:
        total = len(labels[name])
        report[name] = {
            "accuracy": round(100 * correct[name] / total, 2) if total else None,
            "majority": round(100 * max(np.bincount(labels[name])) / total, 2) if total else None,
            "frames": total,
        }
    return report


def slot_of(row, character) -> int:
    """The left / middle / right slot of a visible character (by the centre of its box)."""
    centre = (character["bbox"][0] + character["bbox"][2]) / 2
    return min(NUM_SLOTS - 1, int(centre / row["width"] * NUM_SLOTS))


@torch.no_grad()
def talking_accuracy(model, dataset, image_size: int, num_frames: int = REASONER_FRAMES, share: float = 0.3,
                     clip_heads: bool = False) -> dict:
    """Does the tower tell who talks in a clip, from the frames the reasoner sees (first, last, evenly spaced)? Two
    readings of a visible character's slot's mouth head over the reasoner's `num_frames` frames: talking when the
    mouth is found open in any frame (`accuracy`), or in at least `share` of them (`accuracy_share`: one wrong frame
    does not make a silent character talk; what the reasoner's clip statistics can read, see
    `DeepDubberReasonerConfig.temporal_pooling`). The truth is the corpus's `talking`. This, not the per-frame
    score, is what the reasoner needs to tell a monologue from a narration, and a two-character monologue from a
    dialogue. With `clip_heads`, a third reading: the slot's talking head over the same frames (`accuracy_head`)."""
    model.eval()
    by_any, by_share, by_head, truths = [], [], [], []
    for row in tqdm(dataset.select_columns(["video", "characters", "width"]), desc="Who talks", unit="clip"):
        visible = [c for c in row["characters"] if c["visible"] and c["bbox"]]
        if not visible:
            continue
        frames = load_video_frames(row["video"], num_frames)
        logits = model(to_pixels(frames, image_size), num_frames if clip_heads else None)
        for character in visible:
            slot = slot_of(row, character)
            open_frames = (logits[f"mouth{slot}"].argmax(-1) == 1).float()
            truth = bool(character["talking"])
            by_any.append(bool(open_frames.any()) == truth)
            by_share.append(bool(open_frames.mean() >= share) == truth)
            if clip_heads:
                by_head.append(bool(logits[f"talking{slot}"][0].argmax() == 1) == truth)
            truths.append(truth)
    model.train()
    talking = sum(truths) / len(truths) if truths else 0.0

    def percent(hits):
        return round(100 * sum(hits) / len(hits), 2) if hits else None

    return {"accuracy": percent(by_any), "accuracy_share": percent(by_share), "share": share,
            "accuracy_head": percent(by_head), "majority": round(100 * max(talking, 1 - talking), 2),
            "characters": len(truths)}  # fmt: skip


def main(args):
    torch.manual_seed(args.seed)
    datasets.utils.logging.set_verbosity_warning()
    os.makedirs(args.output_dir, exist_ok=True)
    weights = head_weights(args.head_weight)
    dataset = load_split(args, args.split)
    eval_dataset = load_split(args, args.eval_split) if args.eval_split else None
    if args.init_from:  # a tower this script saved: its weights and its configuration (and image size)
        tower = AutoModel.from_pretrained(args.init_from)
        config = tower.config
    else:
        tiny = TINY_VISION_CONFIGS[args.vision_model_type]
        config = AutoConfig.for_model(args.vision_model_type, **{**tiny, "image_size": args.image_size})
        tower = AutoModel.from_config(config)
    model = FrameClassifier(tower, config.hidden_sizes[-1] if hasattr(config, "hidden_sizes") else config.hidden_size)
    cache = decode(args, dataset, config.image_size, "Decoding frames")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.learning_rate, total_steps=args.max_train_steps)
    rng = np.random.default_rng(args.seed)
    log = []
    with open(os.path.join(args.output_dir, "pretrain_log.jsonl"), "w") as log_file:  # a line per step, as it goes
        for step in tqdm(range(args.max_train_steps), desc="Steps"):
            pixels, targets = stack([cache[i] for i in rng.integers(len(cache), size=args.batch_size)])
            logits = model(pixels, clip_length(args))
            losses = {name: F.cross_entropy(logits[name], targets[name], ignore_index=-100) for name in logits}
            loss = sum(weights[name] * value for name, value in losses.items() if torch.isfinite(value))
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            kinds = {}  # the loss of each kind of head, summed over the slots, for the log
            for name, value in losses.items():
                if torch.isfinite(value):
                    kinds[KIND[name]] = kinds.get(KIND[name], 0.0) + value.item()
            log.append({"step": step + 1, "loss": loss.item(), **{f"loss_{kind}": v for kind, v in kinds.items()}})
            log_file.write(json.dumps(log[-1]) + "\n")
            log_file.flush()
    if eval_dataset is not None:
        accuracies = head_accuracies(model, decode(args, eval_dataset, config.image_size, "Decoding eval frames"),
                                     args.batch_size, clip_length(args))  # fmt: skip
        talking = talking_accuracy(model, eval_dataset, config.image_size,
                                   clip_heads=clip_length(args) == REASONER_FRAMES)  # fmt: skip
        with open(os.path.join(args.output_dir, "head_accuracies.json"), "w") as handle:
            json.dump({"split": args.eval_split, "heads": accuracies, "talking": talking}, handle, indent=2)
        print("held-out head accuracy (%, commonest label's share in brackets): "
              + ", ".join(f"{k} {v['accuracy']} ({v['majority']})" for k, v in accuracies.items()))
        print(f"who talks, from the reasoner's frames: {talking['accuracy']} % of {talking['characters']} characters "
              f"with a mouth open in any frame, {talking['accuracy_share']} % with one open in at least "
              f"{talking['share']:.0%} of them, {talking['accuracy_head']} % by the talking heads "
              f"({talking['majority']} % by always giving the commoner answer)")
    save_pretrained_atomically(args.output_dir, tower)
    print(f"saved the vision tower to {args.output_dir} (final loss {np.mean([e['loss'] for e in log[-20:]]):.3f})")


if __name__ == "__main__":
    main(parse_args())
