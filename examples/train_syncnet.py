"""Train a (tiny) SyncNet on the procedural corpus: the offline default behind LSE-D and LSE-C.

The official SyncNet weights cannot be downloaded here, so the offline LSE scores come from a small SyncNet (the
architecture of `deepdubber_hf.evaluation.syncnet.SyncNetModel`, `SYNCNET_TINY_CONFIG`: narrower channels, 64x64
crops of the lower half of the face) trained on the corpus's clips, whose cartoon mouths open with their speech.

Each example is a window of 5 frames (0.2 s) of one clip, its face track from the same Haar detector and crops as
`lse_scores` uses, the MFCC window under it and those of the clip's audio shifted by `--num_offsets - 1` random
offsets within -max_offset..+max_offset frames. The loss is
a choice (`--loss`):

- `multiway` (default): the synced audio among the shifted ones and the synced audio of the other clips in the
  batch, a softmax over minus the Euclidean distances (the multi-way matching with which SyncNet v2 was trained,
  Chung et al., "Perfect match", ICASSP 2019). It trains exactly what LSE measures: which offset is nearest.
- `contrastive`: the SyncNet paper's loss (Chung & Zisserman 2016, eq. 1) on pairs, synced or not (audio shifted by
  at least `--min_negative_offset` frames, or another clip's), `y d^2 + (1 - y) max(margin - d, 0)^2`.

Windows are drawn where someone speaks (the corpus's `turns`), from scenes with one visible speaker
(`--scene_types monologue`: in a dialogue the tracked face is silent half the time, and a narration's voice is off
screen). Clips where the cascade finds no face are left out.

```bash
accelerate launch examples/train_syncnet.py --dataset path/to/corpus --dataset_config_name level1 \
    --output_dir runs/syncnet_tiny --train_batch_size 32 --max_train_steps 3000 --learning_rate 1e-3 \
    --checkpointing_steps 250
```

The output folder is a `SyncNetModel` (`lse_scores(video, audio, "runs/syncnet_tiny")`), plus `checkpoint-N/`
folders (resumable with `--resume_from_checkpoint latest`), `train_log.jsonl`, `logs/` for TensorBoard and, with
`--num_validation_clips`, `validation.json`: LSE-D / LSE-C of held-out clips with their own audio and with it
delayed by `--validation_shift_frames` (the metric works when the synced audio scores better).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from deepdubber_hf.evaluation.syncnet import (
    MFCC_PER_FRAME,
    MFCC_WINDOW,
    SYNCNET_FPS,
    SYNCNET_SAMPLING_RATE,
    WINDOW_FRAMES,
    SyncNetModel,
    _load_waveform,
    compute_mfcc,
    crop_faces,
    detect_face_boxes,
    face_boxes_from_mouth,
    load_frames,
    lse_scores,
    speaker_mouth_bbox,
)
from deepdubber_hf.training_utils import open_train_log, resume, save_checkpoint, save_pretrained_atomically

logger = get_logger(__name__)

REQUIRED_COLUMNS = ("video", "audio", "turns", "scene_type")
SCENE_TYPES = ("monologue", "dialogue", "narration")


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


def load_split(args, split: str):
    """The `split` of every `--dataset_config_name` of `--dataset`, columns checked, media left encoded."""
    names = args.dataset_config_name or [None]
    try:
        parts = [datasets.load_dataset(args.dataset, name, split=split) for name in names]
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--dataset {args.dataset!r} was not found ({error}): pass the corpus.") from error
    dataset = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"--dataset {args.dataset!r} lacks the columns {missing}: train on the procedural corpus "
            "(`deepdubber generate-data`) or a dataset with the same columns."
        )
    dataset = dataset.cast_column("video", datasets.Video(decode=False))
    return dataset.cast_column("audio", datasets.Audio(decode=False))


def select_scenes(dataset, scene_types: list[str]):
    """The rows whose scene type is one of `scene_types` (a `ClassLabel` or a string column)."""
    feature = dataset.features["scene_type"]
    names = [feature.int2str(v) if isinstance(feature, datasets.ClassLabel) else v for v in dataset["scene_type"]]
    return dataset.select([i for i, name in enumerate(names) if name in scene_types])


def prepare_clip(row, crop_size: int, crop_region: str, detection_stride: int,
                 face_boxes: str = "haar") -> dict | None:  # fmt: skip
    """A clip as SyncNet sees it: crops `(f, s, s, 3)` uint8 BGR, MFCCs `(13, n)`, and which frames are speech;
    None when there is no face: the cascade finds none (`face_boxes="haar"`), or the speaker is off screen
    (`"dataset"`: the corpus's mouth box of the speaker)."""
    frames = load_frames(row["video"])
    if face_boxes == "dataset":
        mouth = speaker_mouth_bbox(row)
        if mouth is None:
            return None
        boxes = face_boxes_from_mouth(mouth, len(frames))
    else:
        boxes, face_found = detect_face_boxes(frames, stride=detection_stride)
        if not face_found:
            return None
    waveform = _load_waveform(row["audio"], None)
    num_frames = min(len(frames), len(waveform) // (SYNCNET_SAMPLING_RATE // SYNCNET_FPS))
    if num_frames < WINDOW_FRAMES + 1:
        return None
    crops = crop_faces(frames[:num_frames], boxes[:num_frames], crop_size, crop_region).astype(np.uint8)
    times = (np.arange(num_frames) + WINDOW_FRAMES / 2) / SYNCNET_FPS  # the middle of each window
    speech = np.zeros(num_frames, dtype=bool)
    for turn in row["turns"]:
        speech |= (times >= turn["start_s"]) & (times <= turn["end_s"])
    return {"crops": crops, "mfcc": compute_mfcc(waveform), "speech": speech}


class SyncWindowDataset(torch.utils.data.Dataset):
    """`windows_per_clip` random windows per clip and epoch: 5 crops, the synced MFCC window and those of the audio
    shifted by `num_offsets - 1` random offsets in -max_offset..+max_offset frames (`offsets`; zeros, and `valid`
    False, when the clip has too few). Candidate 0 is always the synced audio.

    The window drawn for an index depends on (seed, epoch, index) only, so a resumed run sees the same batches.
    """

    def __init__(self, clips: list[dict], windows_per_clip: int, max_offset: int, num_offsets: int, seed: int):
        self.clips, self.windows_per_clip, self.seed = clips, windows_per_clip, seed
        self.max_offset, self.num_offsets = max_offset, num_offsets
        self.epoch = 0

    def __len__(self):
        return len(self.clips) * self.windows_per_clip

    def __getitem__(self, index):
        clip_index = index // self.windows_per_clip
        clip = self.clips[clip_index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        num_frames, num_mfcc = len(clip["crops"]), clip["mfcc"].shape[1]
        last_start = min(num_frames - WINDOW_FRAMES, (num_mfcc - MFCC_WINDOW) // MFCC_PER_FRAME)
        starts = np.arange(last_start + 1)
        speaking = starts[clip["speech"][starts]]
        start = int(rng.choice(speaking if len(speaking) else starts))
        shifts = [d for d in range(-self.max_offset, self.max_offset + 1) if d and 0 <= start + d <= last_start]
        shifts = [0, *rng.permutation(shifts)[: self.num_offsets - 1].tolist()]

        video = torch.from_numpy(clip["crops"][start : start + WINDOW_FRAMES]).permute(3, 0, 1, 2).float()
        audio = torch.zeros(self.num_offsets, 1, clip["mfcc"].shape[0], MFCC_WINDOW)
        for k, shift in enumerate(shifts):
            first = MFCC_PER_FRAME * (start + shift)
            audio[k, 0] = torch.from_numpy(clip["mfcc"][:, first : first + MFCC_WINDOW])
        valid = torch.arange(self.num_offsets) < len(shifts)
        offsets = torch.tensor(shifts + [0] * (self.num_offsets - len(shifts)))
        return {"pixel_values": video, "mfcc": audio, "valid": valid, "offsets": offsets, "clip": clip_index}


# ----------------------------------------------------------------------------------------------------------------
# The losses
# ----------------------------------------------------------------------------------------------------------------


def embed_batch(model, batch):
    """Video embeddings `(b, d)` and audio embeddings at every offset `(b, o, d)`."""
    b, o = batch["mfcc"].shape[:2]
    audio, video = model(batch["mfcc"].flatten(0, 1), batch["pixel_values"])  # (b o, d), (b, d): through DDP
    return video, audio.view(b, o, -1)


def multiway_loss(video, audio, valid, clips):
    """Cross-entropy of the synced audio among the shifted ones, the other clips' synced audio and the zero embedding
    (the padding of `lse_scores`), the logits being minus the Euclidean distances (Perfect Match); also the share of windows whose nearest audio is the synced
    one."""
    b = video.shape[0]
    own = -torch.linalg.vector_norm(video[:, None] - audio, dim=-1)  # (b, o)
    own = own.masked_fill(~valid, float("-inf"))
    synced = audio[:, 0]  # (b, d)
    others = -torch.cdist(video, synced)  # (b, b): clip i's video against clip j's synced audio
    same_clip = clips[:, None] == clips[None, :]  # incl. the diagonal, already among `own`
    others = others.masked_fill(same_clip, float("-inf"))
    # lse_scores pads the audio beyond the clip with zero embeddings (as syncnet_python): rank them below the sync
    padding = -torch.linalg.vector_norm(video, dim=-1, keepdim=True)  # (b, 1)
    logits = torch.cat([own, others, padding], dim=1)  # (b, o + b + 1)
    target = torch.zeros(b, device=video.device, dtype=torch.long)
    accuracy = (logits.argmax(dim=1) == target).float().mean()
    return F.cross_entropy(logits, target), accuracy


def contrastive_loss(video, audio, valid, offsets, clips, min_offset: int, margin: float, generator=None):
    """The SyncNet paper's contrastive loss (eq. 1) on one synced and one unsynced pair per window: audio shifted by
    at least `min_offset` frames when the clip allows it, else the synced audio of another clip in the batch; also
    the share of windows whose synced pair is the nearer one."""
    b, o = valid.shape
    allowed = valid & (offsets.abs() >= min_offset)  # (b, o)
    scores = torch.rand(b, o, generator=generator, device=valid.device).masked_fill(~allowed, -1.0)
    pick = scores.argmax(dim=1)
    negative = audio[torch.arange(b), pick]  # (b, d)
    other = (torch.arange(b, device=valid.device) + 1) % b  # the next window in the batch, if from another clip
    fallback = ~allowed.any(dim=1) & (clips[other] != clips)
    negative = torch.where(fallback[:, None], audio[other, 0], negative)
    has_negative = allowed.any(dim=1) | fallback
    positive_distance = torch.linalg.vector_norm(video - audio[:, 0], dim=-1)  # (b,)
    negative_distance = torch.linalg.vector_norm(video - negative, dim=-1)  # (b,)
    loss = positive_distance.pow(2).mean() / 2
    if has_negative.any():
        loss = loss + F.relu(margin - negative_distance[has_negative]).pow(2).mean() / 2
    accuracy = (positive_distance < negative_distance)[has_negative].float().mean()
    return loss, accuracy


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a (tiny) SyncNet for LSE-D / LSE-C on the procedural corpus.")
    parser.add_argument("--dataset", type=str, required=True, help="The procedural corpus (a folder or Hub id).")
    parser.add_argument("--dataset_config_name", type=str, nargs="*", default=["level1"],
                        help="Corpus configs; level1 (people) by default: the frontal-face cascade misses animals.")
    parser.add_argument("--dataset_split", type=str, default="train")
    parser.add_argument("--scene_types", type=str, nargs="+", default=["monologue"], choices=SCENE_TYPES,
                        help="Scenes to train on; a monologue's one face is the speaker.")  # fmt: skip
    parser.add_argument("--max_train_samples", type=int, default=None, help="Train on the first N clips only.")
    parser.add_argument("--base_channels", type=int, default=8,
                        help="Width of the model: the audio stream's convolutions have (1, 3, 6, 4, 4, 8) times it "
                        "channels, the lip stream's (1.5, 4, 4, 4, 4, 8); 64 is the official SyncNet v2.")
    parser.add_argument("--embedding_dim", type=int, default=128, help="Width of the embeddings (official: 1024).")
    parser.add_argument("--crop_size", type=int, default=64, help="Side of the face crops, >= 51 (official: 224).")
    parser.add_argument("--crop_region", type=str, default="mouth", choices=["face", "mouth"],
                        help="Crops of the lower half of the face ('mouth') or of the whole face ('face').")
    parser.add_argument("--face_boxes", type=str, default="dataset", choices=["dataset", "haar"],
                        help="Where the faces are: the corpus's mouth box of the speaker (`characters`, exact; clips "
                        "with the speaker off screen are left out) or OpenCV's Haar cascade (misses many drawn faces).")
    parser.add_argument("--face_detection_stride", type=int, default=5,
                        help="Run the face detector on every n-th frame (the rest interpolated).")
    parser.add_argument("--loss", type=str, default="multiway", choices=["multiway", "contrastive"])
    parser.add_argument("--max_offset", type=int, default=15,
                        help="Audio shifted by up to this many frames each way are the candidates (multiway) or "
                        "negatives (contrastive); lse_scores' vshift is 15.")
    parser.add_argument("--num_offsets", type=int, default=8,
                        help="Audio windows per video window: the synced one and this many minus one shifted ones, "
                        "drawn from -max_offset..+max_offset (all 2 max_offset + 1 is slower for little gain).")
    parser.add_argument("--min_negative_offset", type=int, default=3,
                        help="contrastive: a shifted negative is at least this many frames away.")
    parser.add_argument("--margin", type=float, default=10.0, help="contrastive: the margin of eq. 1.")
    parser.add_argument("--windows_per_clip", type=int, default=8, help="Windows drawn per clip and epoch.")
    parser.add_argument("--num_validation_clips", type=int, default=0,
                        help="Score this many clips of --validation_split at the end (validation.json).")
    parser.add_argument("--validation_split", type=str, default="test")
    parser.add_argument("--validation_shift_frames", type=int, default=10,
                        help="The shifted condition of the validation delays the audio by this many frames.")
    parser.add_argument("--train_batch_size", type=int, default=32)
    parser.add_argument("--max_train_steps", type=int, default=3000)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--lr_scheduler", type=str, default="constant_with_warmup")
    parser.add_argument("--lr_warmup_steps", type=int, default=50)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--checkpointing_steps", type=int, default=250)
    parser.add_argument("--checkpoints_total_limit", type=int, default=None)
    parser.add_argument("--resume_from_checkpoint", type=str, default=None, help="A checkpoint folder or 'latest'.")
    parser.add_argument("--report_to", type=str, default="tensorboard")
    parser.add_argument("--logging_dir", type=str, default="logs")
    args = parser.parse_args(input_args)
    for name in ("train_batch_size", "max_train_steps", "gradient_accumulation_steps", "checkpointing_steps",
                 "windows_per_clip", "base_channels", "embedding_dim", "face_detection_stride", "num_offsets"):  # fmt: skip
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.max_offset < 1:
        raise ValueError(f"--max_offset must be at least 1 frame (the candidates are the shifted audio), got "
                         f"{args.max_offset}.")  # fmt: skip
    if args.loss == "contrastive" and not 1 <= args.min_negative_offset <= args.max_offset:
        raise ValueError(f"--min_negative_offset must be in [1, --max_offset={args.max_offset}], got "
                         f"{args.min_negative_offset}.")  # fmt: skip
    if args.crop_size < 51:
        raise ValueError(f"--crop_size must be at least 51 pixels (the lip stream's depth), got {args.crop_size}.")
    if args.loss == "multiway" and args.train_batch_size < 2:
        logger.warning("--train_batch_size 1: the multiway loss has no other clips' audio as negatives.")
    return args


def model_config(args) -> dict:
    w = args.base_channels
    return {"audio_channels": (w, 3 * w, 6 * w, 4 * w, 4 * w, 8 * w),
            "lip_channels": (math.ceil(1.5 * w), 4 * w, 4 * w, 4 * w, 4 * w, 8 * w),
            "fc_hidden_size": 8 * w, "embedding_dim": args.embedding_dim, "crop_size": args.crop_size,
            "crop_region": args.crop_region}  # fmt: skip


def validate(model, dataset, args) -> dict:
    """LSE of held-out clips with their own audio and with it delayed by `--validation_shift_frames`."""
    delay = args.validation_shift_frames * SYNCNET_SAMPLING_RATE // SYNCNET_FPS
    results = {"synced": [], "shifted": []}
    for row in dataset:
        waveform = _load_waveform(row["audio"], None)
        shifted = torch.cat([waveform.new_zeros(delay), waveform])[: len(waveform)]
        for name, audio in (("synced", waveform), ("shifted", shifted)):
            mouth = speaker_mouth_bbox(row) if args.face_boxes == "dataset" else None
            scores = lse_scores(row["video"], (audio, SYNCNET_SAMPLING_RATE), model,
                                face_detection_stride=args.face_detection_stride, mouth_bbox=mouth)  # fmt: skip
            results[name].append({"clip_id": row.get("clip_id"), **scores})
    summary = {name: {"lse_d": float(np.mean([r["lse_d"] for r in rows])),
                      "lse_c": float(np.mean([r["lse_c"] for r in rows])),
                      "offsets": [r["offset"] for r in rows]} for name, rows in results.items()}  # fmt: skip
    return {"shift_frames": args.validation_shift_frames, "num_clips": len(dataset), **summary, "per_clip": results}


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> None:
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir,
                                            logging_dir=os.path.join(args.output_dir, args.logging_dir)),
        # The shuffled order of an epoch follows from the seed and the epoch: a resumed run skips exactly the
        # batches it had trained on.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )  # fmt: skip
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    if not accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_error()
    set_seed(args.seed, device_specific=True)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    accelerator.wait_for_everyone()

    # 1. The model.
    model = SyncNetModel(**model_config(args))
    logger.info(f"Training a SyncNet of {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters.")

    # 2. Data: every clip's face crops and MFCCs, computed once.
    dataset = select_scenes(load_split(args, args.dataset_split), args.scene_types)
    if args.max_train_samples is not None:
        dataset = dataset.select(range(min(args.max_train_samples, len(dataset))))
    clips, faceless = [], 0
    for row in tqdm(dataset, desc="Preparing clips", disable=not accelerator.is_local_main_process):
        clip = prepare_clip(row, args.crop_size, args.crop_region, args.face_detection_stride, args.face_boxes)
        faceless += clip is None
        if clip is not None:
            clips.append(clip)
    logger.info(f"{len(clips)} clips ({', '.join(args.scene_types)}); {faceless} left out with no face found.")
    if not clips:
        raise ValueError(
            f"no clip of --dataset {args.dataset!r} ({args.dataset_split}, scene types {args.scene_types}) has a face "
            "the cascade finds: generate more level-1 clips or widen --scene_types."
        )
    train_set = SyncWindowDataset(clips, args.windows_per_clip, args.max_offset, args.num_offsets, args.seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.train_batch_size, shuffle=True,
                                         num_workers=args.dataloader_num_workers, drop_last=False)  # fmt: skip

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=args.max_train_steps * accelerator.num_processes)  # fmt: skip
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    steps_per_epoch = max(1, math.ceil(len(loader) / args.gradient_accumulation_steps))

    global_step = resume(accelerator, args.output_dir, args.resume_from_checkpoint)
    first_epoch = global_step // steps_per_epoch
    resume_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
    log_path = open_train_log(accelerator, args.output_dir, global_step)
    if accelerator.is_main_process:
        accelerator.init_trackers("train_syncnet", config={k: v if isinstance(v, (int, float, str, bool)) else
                                                           str(v) for k, v in vars(args).items()})  # fmt: skip

    # 3. Train.
    unwrapped = accelerator.unwrap_model(model)
    progress = tqdm(range(args.max_train_steps), initial=global_step, desc="Steps",
                    disable=not accelerator.is_local_main_process)  # fmt: skip
    epoch = first_epoch
    while global_step < args.max_train_steps:
        train_set.epoch = epoch  # the windows drawn this epoch
        batches = loader
        if epoch == first_epoch and resume_batches:
            batches = accelerator.skip_first_batches(loader, resume_batches)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        model.train()
        for batch in batches:
            with accelerator.accumulate(model):
                video, audio = embed_batch(model, batch)
                if args.loss == "multiway":
                    loss, accuracy = multiway_loss(video, audio, batch["valid"], batch["clip"])
                else:
                    loss, accuracy = contrastive_loss(video, audio, batch["valid"], batch["offsets"], batch["clip"],
                                                      args.min_negative_offset, args.margin)  # fmt: skip
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                global_step += 1
                progress.update(1)
                logs = {"loss": loss.detach(), "sync_accuracy": accuracy.detach()}
                logs = {k: accelerator.gather(v).mean().item() for k, v in logs.items()}
                logs["lr"] = lr_scheduler.get_last_lr()[0]
                progress.set_postfix(**{k: round(v, 4) for k, v in logs.items()})
                accelerator.log(logs, step=global_step)
                if accelerator.is_main_process:
                    with open(log_path, "a") as handle:
                        handle.write(json.dumps({"step": global_step, **logs}) + "\n")
                if global_step % args.checkpointing_steps == 0:
                    save_checkpoint(accelerator, args.output_dir, global_step, args.checkpoints_total_limit)
                if global_step >= args.max_train_steps:
                    break
        epoch += 1
    progress.close()

    # 4. The model, and how well it tells synced from shifted audio on held-out clips.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped.eval()
        save_pretrained_atomically(args.output_dir, unwrapped)
        logger.info(f"Saved a SyncNetModel to {args.output_dir}")
        if args.num_validation_clips:
            held_out = select_scenes(load_split(args, args.validation_split), args.scene_types)
            held_out = held_out.select(range(min(args.num_validation_clips, len(held_out))))
            if len(held_out) == 0:
                raise ValueError(f"--validation_split {args.validation_split!r} has no clip of the scene types "
                                 f"{args.scene_types}: pass another split or --num_validation_clips 0.")  # fmt: skip
            report = validate(unwrapped, held_out, args)
            with open(os.path.join(args.output_dir, "validation.json"), "w") as handle:
                json.dump(report, handle, indent=2)
            logger.info(f"Validation ({report['num_clips']} clips): synced LSE-D {report['synced']['lse_d']:.3f} "
                        f"LSE-C {report['synced']['lse_c']:.3f}; audio {args.validation_shift_frames} frames late "
                        f"LSE-D {report['shifted']['lse_d']:.3f} LSE-C {report['shifted']['lse_c']:.3f}")  # fmt: skip
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
