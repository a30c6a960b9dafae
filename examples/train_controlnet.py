"""Stage 2.2 of DeepDubber (§3.3.2): teach a frozen speech generator to dub video.

Trained together, on the procedural corpus (or any dataset with its columns):

- the ControlNet (eq. 17), a copy of the first DiT blocks whose zero-initialised residuals steer the frozen DiT
  from the video features and the encoded conclusion, with the flow-matching loss of stage 2.1 on the speech;
- the duration predictor (eq. 18-19), which learns from the video, the script and the conclusion when the speech
  starts and ends in the clip (L1 on onset and offset, in seconds);
- the video encoder (a CLIP vision model at 10 frames a second) and the conclusion's T5 encoder, unless frozen
  (`--freeze_video_encoder`, `--freeze_condition_encoder`; sensible with real CLIP / T5 weights). The tiny
  default CLIP reads each frame with its difference from the previous one (`clip_pixels`), and an auxiliary loss
  (`--activity_weight`) teaches it whether a mouth is open in each frame.

For the speech to be placed by the mouths and not by where the clip starts, `--pad_video_s` holds each clip's first
and last frame for a random time, and `--frame_noise` keeps those held frames from being exactly alike (the clip's
own frames never are). Measured in benchmarks/RESULTS.md ("Speech timing against the mouths").

Each training example is one clip: its speech span (first word to last, from the corpus's `turns`) is the mel to
generate, after the clip's reference voice (`reference_audio`, `reference_text`) as the F5-TTS prompt; the video
features under that span are the ControlNet's input, the whole clip's the duration predictor's. The conclusion is
the clip's annotation (scene type, speakers, gender, age, emotion), as the reasoner would give it. Video,
conclusion and script (with the prompt voice) are each dropped for 5 % of the samples, which trains the branches
of eq. 20's guidance. The Table 7 ablations are switches: `--no_video`, `--no_conclusion`,
`--no_duration_predictor`.

```bash
accelerate launch examples/train_controlnet.py --dataset path/to/corpus --dataset_config_name level1 level2 \
    --pretrained_model_name_or_path runs/tts_tiny --output_dir runs/dubber_tiny \
    --train_batch_size 8 --max_train_steps 4000 --learning_rate 1e-4 --checkpointing_steps 500
```

`--pretrained_model_name_or_path` is a stage 2.1 output (`transformer/`, `tokenizer/`, and `vocoder/` when it was
saved as a pipeline; else give `--vocoder_name_or_path`). `--reasoner_name_or_path` adds a stage-1 reasoner to the
saved pipeline, so that it reasons over a clip when the caller gives no conclusion. The output folder is a complete
`DeepDubberPipeline` (`DeepDubberPipeline.from_pretrained(output_dir)(video=..., text=...)`), plus `checkpoint-N/`
folders (resumable with `--resume_from_checkpoint latest`), `train_log.jsonl` and `logs/` for TensorBoard.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os

import datasets
import torch
import torch.nn.functional as F
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm
from train_tts import check_launch, load_vocoder

from deepdubber_hf.audio import SAMPLING_RATE, load_audio, log_mel_spectrogram, rms_normalize
from deepdubber_hf.evaluation.reasoning import reference_conclusions
from deepdubber_hf.models.conditioning import VIDEO_FPS, clip_pixels, load_frames_at_rate, video_under_speech
from deepdubber_hf.models.controlnet_dit import DeepDubberControlNetModel
from deepdubber_hf.models.transformer_dit import DiTTransformerModel
from deepdubber_hf.pipelines.dubbing import dubbing_components
from deepdubber_hf.pipelines.pipeline_deepdubber import DeepDubberPipeline, _end_sentence, spread_text
from deepdubber_hf.schedulers.scheduling_flow_match import FlowMatchSwayScheduler
from deepdubber_hf.text import DeepDubberTokenizer
from deepdubber_hf.training_utils import (
    freeze_module,
    open_train_log,
    resume,
    save_checkpoint,
    save_pretrained_atomically,
    whole_models,
)

logger = get_logger(__name__)

REQUIRED_COLUMNS = ("video", "audio", "transcript", "turns", "reference_audio", "reference_text", "scene_type",
                    "num_speakers", "speaker_gender", "speaker_age", "speaker_emotion")  # fmt: skip
HOP = 256
MEL_FPS = SAMPLING_RATE / HOP


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


def load_corpus(args):
    """The `--dataset_split` of every `--dataset_config_name` of `--dataset`, concatenated, columns checked."""
    names = args.dataset_config_name or [None]
    try:
        parts = [datasets.load_dataset(args.dataset, name, split=args.dataset_split) for name in names]
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--dataset {args.dataset!r} was not found ({error}): pass the corpus.") from error
    dataset = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"--dataset {args.dataset!r} lacks the columns {missing}: stage 2.2 trains on the procedural corpus "
            "(`deepdubber generate-data`) or a dataset with the same columns."
        )
    return dataset


def speech_span(turns: list) -> tuple[float, float]:
    """First word to last word of a clip, in seconds."""
    return min(t["start_s"] for t in turns), max(t["end_s"] for t in turns)


def mouth_activity(mouth_openness, fps, num_frames: int) -> torch.Tensor:
    """Per video frame at 10 fps: 1.0 when a mouth is open (someone visibly speaks), 0.0 when none is, -1.0 when
    the dataset has no `mouth_openness` (the label is then ignored)."""
    if not mouth_openness or not fps:
        return torch.full((num_frames,), -1.0)
    open_any = torch.tensor(mouth_openness, dtype=torch.float32).amax(dim=0) > 0  # (frames at fps,)
    index = (torch.arange(num_frames) / VIDEO_FPS * fps).round().long().clamp(max=open_any.shape[0] - 1)
    return open_any[index].float()


class DubbingDataset(torch.utils.data.Dataset):
    """A corpus row → the frames at 10 fps (processed for the video encoder), the reference mel, the speech mel,
    the texts, the conclusion text and the speech's onset and offset."""

    def __init__(self, dataset, image_processor, conclusions: list[str], with_audio: bool = True,
                 pad_video_s: float = 0.0, num_channels: int = 3, frame_noise: float = 0.0):
        columns = ["video", "transcript", "turns", "reference_text"]
        columns += [c for c in ("mouth_openness", "fps") if c in dataset.column_names]
        self.dataset = dataset.select_columns(columns + (["audio", "reference_audio"] if with_audio else []))
        self.image_processor = image_processor
        self.conclusions = conclusions
        self.with_audio = with_audio
        self.pad_video_s = pad_video_s
        self.num_channels = num_channels
        self.frame_noise = frame_noise

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        row = self.dataset[index]
        frames, clip_s = load_frames_at_rate(row["video"], VIDEO_FPS)
        onset, offset = speech_span(row["turns"])
        activity = mouth_activity(row.get("mouth_openness"), row.get("fps"), frames.shape[0])
        shift = 0.0
        if self.pad_video_s > 0:  # still frames before and after: the speech may start anywhere in a clip
            before, after = (int(torch.randint(0, int(self.pad_video_s * VIDEO_FPS) + 1, ())) for _ in range(2))
            frames = torch.cat([frames[:1].expand(before, -1, -1, -1), frames, frames[-1:].expand(after, -1, -1, -1)])
            activity = torch.cat([activity.new_zeros(before), activity, activity.new_zeros(after)])
            shift = before / VIDEO_FPS
        if self.frame_noise > 0:  # no two frames exactly alike, held ones included, as in footage
            generator = torch.Generator().manual_seed(index)  # the clip's own: a resumed run draws the same
            noise = torch.randn(frames.shape, generator=generator)
            frames = (frames.float() + self.frame_noise * noise).round().clamp(0, 255)
        pixels = clip_pixels(frames, self.image_processor, self.num_channels)  # (f, c, s, s)
        item = {"pixels": pixels, "text": row["transcript"], "reference_text": row["reference_text"],
                "conclusion": self.conclusions[index], "onset_s": onset + shift, "offset_s": offset + shift,
                "activity": activity}  # fmt: skip
        if self.with_audio:  # the mels of the flow loss (not needed by the duration predictor alone)
            audio = load_audio(row["audio"], SAMPLING_RATE)
            speech, _ = rms_normalize(audio[int(onset * SAMPLING_RATE) : int(offset * SAMPLING_RATE)])
            reference, _ = rms_normalize(load_audio(row["reference_audio"], SAMPLING_RATE))
            item["reference_mel"] = log_mel_spectrogram(reference).T  # (n_ref, 100)
            item["speech_mel"] = log_mel_spectrogram(speech).T  # (n_new, 100)
        return item


class DubbingCollator:
    """Pads a batch; with `with_durations=True` (a base DiT with average text upsampling) also gives each token its
    frames (`text_durations`)."""

    def __init__(self, tokenizer, condition_tokenizer, with_durations: bool = False):
        self.tokenizer, self.condition_tokenizer = tokenizer, condition_tokenizer
        self.with_durations = with_durations

    def __call__(self, items):
        frames = [item["pixels"].shape[0] for item in items]
        pixels = torch.nn.utils.rnn.pad_sequence([item["pixels"] for item in items], batch_first=True)
        conditions = self.condition_tokenizer([item["conclusion"] for item in items], padding=True,
                                              return_tensors="pt")  # fmt: skip
        batch = {
            "pixels": pixels,
            "video_mask": torch.arange(pixels.shape[1])[None] < torch.tensor(frames)[:, None],
            "speech_text_ids": self.tokenizer.text_to_ids([item["text"] for item in items]),
            "condition_ids": conditions["input_ids"],
            "condition_mask": conditions["attention_mask"].bool(),
            "onset_s": torch.tensor([item["onset_s"] for item in items]),
            "offset_s": torch.tensor([item["offset_s"] for item in items]),
            "activity": torch.nn.utils.rnn.pad_sequence([item["activity"] for item in items], batch_first=True,
                                                        padding_value=-1.0),  # fmt: skip
        }
        if "speech_mel" in items[0]:
            batch["mel"] = torch.nn.utils.rnn.pad_sequence(
                [torch.cat([item["reference_mel"], item["speech_mel"]]) for item in items], batch_first=True
            )  # (b, n, 100)
            batch["reference_frames"] = torch.tensor([item["reference_mel"].shape[0] for item in items])
            batch["speech_frames"] = torch.tensor([item["speech_mel"].shape[0] for item in items])
            full_texts = [_end_sentence(item["reference_text"]) + item["text"] for item in items]
            batch["text_ids"] = self.tokenizer.text_to_ids(full_texts)
        if "speech_mel" in items[0] and self.with_durations:
            # Frames per token: aligned to the speech when the tokenizer has an aligner (as in stage 2.1), else
            # spread as the pipeline spreads new text.
            batch["text_durations"] = spread_text(
                self.tokenizer, batch["text_ids"], [item["reference_text"] for item in items],
                batch["reference_frames"], batch["reference_frames"] + batch["speech_frames"],
                reference_mels=[item["reference_mel"] for item in items],
                new_mels=[item["speech_mel"] for item in items],
            )  # fmt: skip
        return batch


# ----------------------------------------------------------------------------------------------------------------
# The models and the loss
# ----------------------------------------------------------------------------------------------------------------


class Dubber(torch.nn.Module):
    """The trainable parts of stage 2.2 in one module (one DDP wrapper), around the frozen DiT."""

    def __init__(self, transformer, controlnet, duration_predictor, video_encoder, condition_encoder):
        super().__init__()
        self.controlnet, self.duration_predictor = controlnet, duration_predictor
        self.video_encoder, self.condition_encoder = video_encoder, condition_encoder
        # Training-only: reads "a mouth is open" from each frame's features (not saved with the pipeline).
        self.activity_head = torch.nn.Linear(video_encoder.config.projection_dim, 1)
        self.frozen = [transformer]  # a plain list: not a submodule, so neither DDP nor the optimiser sees it

    def video_features(self, pixels, video_mask):
        """(b, f, dv) CLIP embeddings of the valid frames, zeros over the padding."""
        flat = self.video_encoder(pixel_values=pixels[video_mask]).image_embeds
        features = flat.new_zeros(*video_mask.shape, flat.shape[-1])
        features[video_mask] = flat
        return features

    def forward(self, batch, drops, duration_weight: float, use_duration_predictor: bool, use_flow: bool = True,
                activity_weight: float = 0.0, generator=None):
        features = self.video_features(batch["pixels"], batch["video_mask"])  # (b, f, dv)
        condition = self.condition_encoder(input_ids=batch["condition_ids"],
                                           attention_mask=batch["condition_mask"]).last_hidden_state  # fmt: skip
        losses = {}
        labelled = batch["video_mask"] & (batch["activity"] >= 0)
        if activity_weight > 0 and labelled.any():
            logits = self.activity_head(features[labelled]).squeeze(-1)
            losses["activity"] = F.binary_cross_entropy_with_logits(logits, batch["activity"][labelled])
        if use_flow:
            losses["flow"] = self.flow_loss(batch, drops, features, condition, generator)
        if use_duration_predictor:
            keep_video = (~drops["video"]).to(features.dtype)[:, None, None]
            keep_condition = (~drops["conclusion"])[:, None] & batch["condition_mask"]
            keep_condition[:, 0] |= ~keep_condition.any(dim=1)  # a dropped conclusion keeps one (masked-out) token
            out = self.duration_predictor(
                video_features=features * keep_video, video_mask=batch["video_mask"],
                text_ids=batch["speech_text_ids"], condition_embeds=condition * (~drops["conclusion"])[:, None, None],
                condition_mask=keep_condition, onset_s=batch["onset_s"], offset_s=batch["offset_s"],
            )  # fmt: skip
            losses["duration"] = out.loss
        loss = losses.get("flow", 0.0) + duration_weight * losses.get("duration", 0.0)
        loss = loss + activity_weight * losses.get("activity", 0.0)
        return loss, losses

    def flow_loss(self, batch, drops, features, condition, generator=None):
        """Stage 2.1's flow-matching loss on the speech frames, the prompt fixed to the reference voice, with the
        ControlNet's residuals in the frozen DiT."""
        transformer = self.frozen[0]
        mel, n_ref, n_new = batch["mel"], batch["reference_frames"], batch["speech_frames"]
        b, n, _ = mel.shape
        device = mel.device

        # The video under the speech, at the mel rate; nothing under the reference voice.
        rows = []
        for i in range(b):
            frames = int(batch["video_mask"][i].sum())
            row = video_under_speech(features[i, :frames], float(batch["onset_s"][i]), float(batch["offset_s"][i]),
                                     int(n_ref[i]), int(n_new[i]))  # fmt: skip
            rows.append(F.pad(row, (0, 0, 0, n - row.shape[0])))
        video = torch.stack(rows)  # (b, n, dv)

        positions = torch.arange(n, device=device)[None]
        valid = positions < (n_ref + n_new)[:, None]
        speech = valid & (positions >= n_ref[:, None])
        x0 = torch.randn(mel.shape, generator=generator, device=device, dtype=mel.dtype)
        time = torch.rand((b,), generator=generator, device=device, dtype=mel.dtype)
        x_t = (1 - time[:, None, None]) * x0 + time[:, None, None] * mel
        cond = torch.where(speech[..., None], torch.zeros_like(mel), mel)
        common = {"cond": cond, "timestep": time, "text_ids": batch["text_ids"], "attention_mask": valid,
                  "drop_audio_cond": drops["text"], "drop_text": drops["text"],
                  "text_durations": batch.get("text_durations")}  # fmt: skip
        residuals = self.controlnet(x_t, video_features=video, condition_embeds=condition,
                                    condition_mask=batch["condition_mask"], drop_video=drops["video"],
                                    drop_conclusion=drops["conclusion"], **common).controlnet_block_samples  # fmt: skip
        pred = transformer(x_t, block_controlnet_hidden_states=list(residuals), **common).sample
        return F.mse_loss(pred.float(), (mel - x0).float(), reduction="none")[speech].mean()


def sample_drops(batch_size: int, args, device, generator=None) -> dict:
    """Per-sample drops of video, conclusion and script (+ prompt voice); the ablations drop always."""
    def draw(probability, always):
        if always:
            return torch.ones(batch_size, dtype=torch.bool, device=device)
        return torch.rand(batch_size, generator=generator, device=device) < probability

    return {"video": draw(args.video_drop_prob, args.no_video),
            "conclusion": draw(args.conclusion_drop_prob, args.no_conclusion),
            "text": draw(args.text_drop_prob, False)}  # fmt: skip


def load_base(args):
    """The stage 2.1 transformer (frozen), its tokenizer and a vocoder."""
    path = args.pretrained_model_name_or_path
    if not os.path.isdir(os.path.join(path, "transformer")) or not os.path.isdir(os.path.join(path, "tokenizer")):
        raise FileNotFoundError(
            f"--pretrained_model_name_or_path {path!r} has no transformer/ and tokenizer/: pass the output folder "
            "of examples/train_tts.py (or of scripts/convert_f5tts_checkpoint.py)."
        )
    transformer = DiTTransformerModel.from_pretrained(path, subfolder="transformer")
    tokenizer = DeepDubberTokenizer.from_pretrained(os.path.join(path, "tokenizer"))
    if args.vocoder_name_or_path is None:
        if not os.path.isdir(os.path.join(path, "vocoder")):
            raise ValueError(
                f"{path!r} has no vocoder/: pass --vocoder_name_or_path (a VocosVocoder folder or an official Vocos "
                "folder) so that the output is a complete pipeline."
            )
        args.vocoder_name_or_path = os.path.join(path, "vocoder")
    return transformer, tokenizer, load_vocoder(args)


def load_encoders(args) -> dict:
    """Real CLIP / T5 when given, else None (the tiny random ones of `dubbing_components`)."""
    found = {}
    if args.video_encoder_name_or_path:
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        found["video_encoder"] = CLIPVisionModelWithProjection.from_pretrained(args.video_encoder_name_or_path)
        found["image_processor"] = CLIPImageProcessor.from_pretrained(args.video_encoder_name_or_path)
    if args.condition_encoder_name_or_path:
        from transformers import AutoTokenizer, T5EncoderModel

        found["condition_encoder"] = T5EncoderModel.from_pretrained(args.condition_encoder_name_or_path)
        found["condition_tokenizer"] = AutoTokenizer.from_pretrained(args.condition_encoder_name_or_path)
    return found


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="DeepDubber stage 2.2: ControlNet and duration predictor.")
    parser.add_argument("--dataset", type=str, required=True, help="The procedural corpus (a folder or Hub id).")
    parser.add_argument("--dataset_config_name", type=str, nargs="*", default=None, help="e.g. level1 level2.")
    parser.add_argument("--dataset_split", type=str, default="train")
    parser.add_argument("--max_train_samples", type=int, default=None, help="Train on the first N clips only.")
    parser.add_argument("--pretrained_model_name_or_path", type=str, required=True,
                        help="Stage 2.1 output: transformer/ and tokenizer/ (and vocoder/).")  # fmt: skip
    parser.add_argument("--vocoder_name_or_path", type=str, default=None)
    parser.add_argument("--reasoner_name_or_path", type=str, default=None,
                        help="A stage-1 reasoner folder to include in the saved pipeline.")  # fmt: skip
    parser.add_argument("--reasoner_mode", type=str, default="cot", choices=["cot", "qa"],
                        help="How that reasoner answers (examples/train_sft.py --mode).")
    parser.add_argument("--video_encoder_name_or_path", type=str, default=None,
                        help="A CLIP vision model with projection (e.g. openai/clip-vit-large-patch14); default: the "
                        "tiny random one, trained here.")  # fmt: skip
    parser.add_argument("--condition_encoder_name_or_path", type=str, default=None,
                        help="A T5 encoder and its tokenizer (e.g. t5-small); default: the tiny random one.")
    parser.add_argument("--freeze_video_encoder", action="store_true")
    parser.add_argument("--freeze_condition_encoder", action="store_true")
    parser.add_argument("--controlnet_layers", type=int, default=2, help="DiT blocks the ControlNet copies.")
    parser.add_argument("--duration_weight", type=float, default=1.0, help="Weight of L_dur beside the flow loss.")
    parser.add_argument("--activity_weight", type=float, default=1.0,
                        help="Weight of an auxiliary loss that teaches the video encoder, frame by frame, whether a "
                        "mouth is open (the corpus's `mouth_openness`); 0 disables it. A randomly initialised tiny "
                        "CLIP does not find the mouths from the duration loss alone.")
    parser.add_argument("--video_drop_prob", type=float, default=0.05)
    parser.add_argument("--conclusion_drop_prob", type=float, default=0.05)
    parser.add_argument("--text_drop_prob", type=float, default=0.05, help="Drops the script and the prompt voice.")
    parser.add_argument("--no_video", action="store_true", help="Ablation: never show the video.")
    parser.add_argument("--no_conclusion", action="store_true", help="Ablation: never show the conclusion.")
    parser.add_argument("--no_duration_predictor", action="store_true",
                        help="Ablation: train no duration predictor (the pipeline then uses F5-TTS's length rule).")
    parser.add_argument("--duration_predictor_only", action="store_true",
                        help="Train the duration predictor (and the encoders) alone, with L_dur: no DiT forward, so "
                        "much faster; the ControlNet stays as it is (zero, or --controlnet_name_or_path's).")
    parser.add_argument("--flow_every", type=int, default=1,
                        help="Compute the flow loss (the DiT and ControlNet forward, the slow part) on every N-th step "
                        "only, and L_dur alone on the others: the duration predictor gets N times the steps for the "
                        "same time (the embedded default's CPU budget).")
    parser.add_argument("--controlnet_name_or_path", type=str, default=None,
                        help="Start from this ControlNet (e.g. the controlnet/ of an earlier run).")
    parser.add_argument("--pad_video_s", type=float, default=0.0,
                        help="Augmentation: up to this many seconds of still frames (the first / last, repeated) "
                        "before and after each clip, so that the speech does not always start as far into the clip "
                        "(the corpus cuts its clips about 0.36 s before the first word).")
    parser.add_argument("--frame_noise", type=float, default=1.0,
                        help="Augmentation: Gaussian noise of this many grey levels on every frame. Held frames are "
                        "otherwise exactly alike and the clip's own are not (compression), which a motion-reading "
                        "encoder takes for where the clip starts instead of reading the mouths; 0 disables it.")
    parser.add_argument("--train_batch_size", type=int, default=8)
    parser.add_argument("--max_train_steps", type=int, default=4000)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--lr_scheduler", type=str, default="constant_with_warmup")
    parser.add_argument("--lr_warmup_steps", type=int, default=100)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=None)
    parser.add_argument("--resume_from_checkpoint", type=str, default=None, help="A checkpoint folder or 'latest'.")
    parser.add_argument("--report_to", type=str, default="tensorboard")
    parser.add_argument("--logging_dir", type=str, default="logs")
    args = parser.parse_args(input_args)
    if args.pad_video_s < 0:
        raise ValueError(f"--pad_video_s must be >= 0 seconds, got {args.pad_video_s}.")
    if args.frame_noise < 0:
        raise ValueError(f"--frame_noise must be >= 0 grey levels, got {args.frame_noise}.")
    if args.duration_predictor_only and args.no_duration_predictor:
        raise ValueError("--duration_predictor_only and --no_duration_predictor leave nothing to train: drop one.")
    if args.flow_every > 1 and args.no_duration_predictor:
        raise ValueError("--flow_every > 1 skips the flow loss on steps where, with --no_duration_predictor, nothing "
                         "else is trained: drop one of them.")  # fmt: skip
    for name in ("video_drop_prob", "conclusion_drop_prob", "text_drop_prob"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name} {getattr(args, name)} is not a probability: pass a value in [0, 1].")
    for name in ("train_batch_size", "max_train_steps", "gradient_accumulation_steps", "checkpointing_steps",
                 "controlnet_layers", "flow_every"):  # fmt: skip
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    return args


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
        # A dropped video or conclusion still routes every parameter through the graph (times zero).
        # Steps without the flow loss (--flow_every) leave the ControlNet out of the graph.
        kwargs_handlers=[DistributedDataParallelKwargs(
            find_unused_parameters=args.no_duration_predictor or args.flow_every > 1)],
        # The shuffled order of an epoch follows from the seed and the epoch: a resumed run skips exactly the
        # batches it had trained on.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )  # fmt: skip
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    for library in (datasets, transformers):
        library.utils.logging.set_verbosity_warning() if accelerator.is_local_main_process else \
            library.utils.logging.set_verbosity_error()
    check_launch(accelerator)
    set_seed(args.seed, device_specific=True)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    accelerator.wait_for_everyone()

    # 1. The frozen speech generator and the new parts.
    transformer, tokenizer, vocoder = load_base(args)
    freeze_module(transformer).eval()
    parts = dubbing_components(transformer, controlnet_layers=args.controlnet_layers, **load_encoders(args))
    model = Dubber(transformer, parts["controlnet"], parts["duration_predictor"], parts["video_encoder"],
                   parts["condition_encoder"])  # fmt: skip
    if args.freeze_video_encoder:
        freeze_module(model.video_encoder)
    if args.freeze_condition_encoder:
        freeze_module(model.condition_encoder)
    if args.no_duration_predictor:
        freeze_module(model.duration_predictor)
    if args.controlnet_name_or_path:
        start = DeepDubberControlNetModel.from_pretrained(args.controlnet_name_or_path)
        model.controlnet.load_state_dict(start.state_dict())
    if args.duration_predictor_only:
        freeze_module(model.controlnet)

    # 2. Data.
    dataset = load_corpus(args)
    activity_weight = args.activity_weight
    if args.no_video or "mouth_openness" not in dataset.column_names:
        activity_weight = 0.0  # nothing to teach the video encoder, or no labels to teach it with
    if activity_weight == 0:
        freeze_module(model.activity_head)
    trainable = [p for p in model.parameters() if p.requires_grad]
    logger.info(f"Training {sum(p.numel() for p in trainable) / 1e6:.2f}M parameters beside a frozen DiT of "
                f"{sum(p.numel() for p in transformer.parameters()) / 1e6:.2f}M.")  # fmt: skip
    if args.max_train_samples is not None:
        dataset = dataset.select(range(min(args.max_train_samples, len(dataset))))
    conclusions = [c.to_text() for c in reference_conclusions(dataset)]
    try:  # every script must fit the speech tokenizer: fail now, not in the middle of an epoch
        tokenizer.text_to_ids(list(dataset["transcript"]) + list(dataset["reference_text"]))
    except ValueError as error:
        raise ValueError(f"the transcripts of --dataset do not fit the base model's tokenizer: {error}") from error
    loader = torch.utils.data.DataLoader(
        DubbingDataset(dataset, parts["image_processor"], conclusions, with_audio=not args.duration_predictor_only,
                       pad_video_s=args.pad_video_s, num_channels=parts["video_encoder"].config.num_channels,
                       frame_noise=args.frame_noise),
        batch_size=args.train_batch_size,
        shuffle=True, collate_fn=DubbingCollator(tokenizer, parts["condition_tokenizer"],
                                                 with_durations=transformer.config.text_upsampling == "average"),
        num_workers=args.dataloader_num_workers, drop_last=False,
    )  # fmt: skip

    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=1e-2)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=args.max_train_steps * accelerator.num_processes)  # fmt: skip
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    transformer.to(accelerator.device)
    steps_per_epoch = max(1, math.ceil(len(loader) / args.gradient_accumulation_steps))

    global_step = resume(accelerator, args.output_dir, args.resume_from_checkpoint)
    first_epoch = global_step // steps_per_epoch
    resume_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
    log_path = open_train_log(accelerator, args.output_dir, global_step)
    if accelerator.is_main_process:
        accelerator.init_trackers("train_controlnet", config={k: v if isinstance(v, (int, float, str, bool)) else
                                                              str(v) for k, v in vars(args).items()})  # fmt: skip

    # 3. Train.
    progress = tqdm(range(args.max_train_steps), initial=global_step, desc="Steps",
                    disable=not accelerator.is_local_main_process)  # fmt: skip
    epoch = first_epoch
    while global_step < args.max_train_steps:
        batches = loader
        if epoch == first_epoch and resume_batches:
            batches = accelerator.skip_first_batches(loader, resume_batches)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        model.train()
        for batch in batches:
            with accelerator.accumulate(model):
                drops = sample_drops(batch["pixels"].shape[0], args, accelerator.device)
                use_flow = not args.duration_predictor_only and global_step % args.flow_every == 0
                loss, parts_of_loss = model(batch, drops, args.duration_weight, not args.no_duration_predictor,
                                            use_flow=use_flow, activity_weight=activity_weight)  # fmt: skip
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                global_step += 1
                progress.update(1)
                logs = {"loss": loss, **{f"loss_{k}": v for k, v in parts_of_loss.items()}}
                logs = {k: accelerator.gather(v.detach()).mean().item() for k, v in logs.items()}
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

    # 4. The whole pipeline.
    accelerator.wait_for_everyone()
    trained = ["controlnet", "video_encoder"] + ([] if args.no_duration_predictor else ["duration_predictor"])
    trained += [] if args.no_conclusion else ["condition_encoder"]
    # Every process takes part: under FSDP the weights are gathered from the shards.
    trained = dict(zip(trained, whole_models(accelerator, model, trained), strict=True))
    if accelerator.is_main_process:
        reasoner = {}
        if args.reasoner_name_or_path:
            from deepdubber_hf.reasoner.generation import load_reasoner

            reasoner["reasoner"], reasoner["reasoner_processor"] = load_reasoner(args.reasoner_name_or_path)
        pipeline = DeepDubberPipeline(
            transformer=transformer, scheduler=FlowMatchSwayScheduler(), vocoder=vocoder, tokenizer=tokenizer,
            controlnet=trained["controlnet"], duration_predictor=trained.get("duration_predictor"),
            video_encoder=trained["video_encoder"], image_processor=parts["image_processor"],
            condition_encoder=trained.get("condition_encoder"),
            condition_tokenizer=None if args.no_conclusion else parts["condition_tokenizer"], **reasoner,
            reasoner_mode=args.reasoner_mode,
        )  # fmt: skip
        save_pretrained_atomically(args.output_dir, pipeline)
        logger.info(f"Saved a DeepDubberPipeline with its ControlNet and duration predictor to {args.output_dir}")
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
