"""Stage 2.1 of DeepDubber (§3.3.1): pre-train the F5-TTS-class speech generator with conditional flow matching.

The recipe is F5-TTS v1's (`f5_tts/model/cfm.py`, `f5_tts/model/trainer.py`, `F5TTS_v1_Base.yaml`): the model
learns to infill a random 70-100 % span of each utterance from the rest of its mel and the transcript, with the
prompt audio dropped 30 % of the time and both prompt and text dropped 20 % of the time (classifier-free
guidance); AdamW with linear warm-up and linear decay, gradient clipping at 1.0 and an EMA of the weights.

Any `datasets` dataset with an audio column and a transcript column works: a folder written by
`Dataset.save_to_disk`, or anything `load_dataset` reads (a parquet folder, an audiofolder, a Hub id).

Pre-training F5-TTS v1 Base (8 GPUs, 38400 frames per GPU, as the paper's backbone):

```bash
accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 examples/train_tts.py \
    --dataset path/to/speech_dataset --output_dir runs/tts_base \
    --model_config base --tokenizer_mode char \
    --max_frames_per_batch 38400 --train_batch_size 64 \
    --learning_rate 7.5e-5 --lr_warmup_steps 20000 --max_train_steps 1200000 \
    --checkpointing_steps 50000 --checkpoints_total_limit 3 --report_to tensorboard
```

A two-step smoke run on the CPU, as two processes of gloo DDP (`accelerate launch --cpu --num_processes 2`
starts a single process unless it runs under mpirun; torchrun's launcher with ACCELERATE_USE_CPU starts two):

```bash
ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/train_tts.py \
    --dataset path/to/speech_dataset --output_dir runs/tts_tiny \
    --model_config tiny --train_batch_size 2 --max_train_steps 2 --lr_warmup_steps 0
```

Continue where a run stopped (the step, optimiser, scheduler, EMA, random states and the data position):

```bash
accelerate launch examples/train_tts.py --dataset path/to/speech_dataset --output_dir runs/tts_base \
    --model_config base --max_frames_per_batch 38400 --max_train_steps 1200000 --resume_from_checkpoint latest
```

A small model on a CPU budget learns faster when it is told which frames say which token: with
`--text_upsampling average --text_alignment viterbi` the script first aligns every transcript to its speech
(`deepdubber_hf.alignment`: a one-Gaussian-per-token HMM trained from a flat start, no extra model), trains the
average upsampling on those durations, and stores each token type's mean frames in the tokenizer, which the
pipeline then uses to spread new text. This is the embedded default's setting (`scripts/tiny_checkpoints.sh`):

```bash
accelerate launch --num_cpu_threads_per_process 2 examples/train_tts.py --dataset runs/tiny-default/utterances \
    --output_dir runs/tts --model_config mini --tokenizer_mode phoneme --text_upsampling average \
    --text_alignment viterbi --max_duration_s 4.5 --max_frames_per_batch 3200 --learning_rate 5e-4 \
    --lr_warmup_steps 300 --max_train_steps 3000 --ema_decay 0.999 --ema_update_after_step 100
```

The output folder ends up with `transformer/` (the EMA weights, what inference should use), `tokenizer/`,
`scheduler/`, `checkpoint-{step}/` folders, `train_log.jsonl` ({"step", "loss", "lr"} per optimiser step),
`logs/` for TensorBoard, and with `--text_alignment viterbi` `text_alignment.pt` (the durations, reused on resume).
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
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from deepdubber_hf.alignment import align_utterances, cepstral_features, silent_token_ids, token_frame_weights
from deepdubber_hf.audio import HOP_LENGTH, SAMPLING_RATE, load_audio, log_mel_spectrogram, num_mel_frames
from deepdubber_hf.models.conversion_f5tts import F5TTS_ARCHS, f5tts_config_to_dit_config
from deepdubber_hf.models.transformer_dit import DiTTransformerModel
from deepdubber_hf.models.vocoder import GriffinLimVocoder, VocosVocoder
from deepdubber_hf.models.vocoder import load_vocoder as load_vocoder_from
from deepdubber_hf.pipelines.pipeline_deepdubber import DeepDubberPipeline
from deepdubber_hf.schedulers.scheduling_flow_match import FlowMatchSwayScheduler
from deepdubber_hf.text import DeepDubberTokenizer
from deepdubber_hf.training_utils import (
    full_tensors,
    is_sharded,
    open_train_log,
    resume,
    save_checkpoint,
    shard_like,
    whole_models,
)

logger = get_logger(__name__)

# Architectures of `--model_config`; the vocabulary size always comes from the tokenizer.
MODEL_CONFIGS = {
    # For tests and smoke runs on a CPU.
    "tiny": dict(
        num_layers=4,
        num_attention_heads=4,
        attention_head_dim=32,
        mlp_ratio=2.0,
        text_embed_dim=64,
        num_text_conv_layers=2,
    ),
    # The embedded default's speech generator (`make tiny-checkpoints`): 6.3 M parameters, trainable on a CPU.
    "mini": dict(
        num_layers=6,
        num_attention_heads=4,
        attention_head_dim=64,
        mlp_ratio=2.0,
        text_embed_dim=128,
        num_text_conv_layers=2,
    ),
    # F5-TTS v1 Small and Base, from the one table of F5-TTS architectures the converter uses.
    **{
        name: {k: v for k, v in f5tts_config_to_dit_config(F5TTS_ARCHS[f5_name], vocab_size=0).items()
               if k not in ("vocab_size", "in_channels", "dropout")}
        for name, f5_name in (("small", "F5TTS_v1_Small"), ("base", "F5TTS_v1_Base"))
    },
}

# What a finished checkpoint folder holds besides accelerate's files.
EMA_FOLDER = "transformer_ema"


# ----------------------------------------------------------------------------------------------------------------
# The loss
# ----------------------------------------------------------------------------------------------------------------


def random_span_mask(
    lengths: torch.Tensor, frac_lengths_mask: tuple[float, float], num_frames: int, generator=None
) -> torch.Tensor:
    """One contiguous span per sample covering a random fraction of its valid frames (F5-TTS's
    `mask_from_frac_lengths`).

    Args:
        lengths (`torch.LongTensor` of shape `(batch_size,)`):
            Valid mel frames per sample.
        frac_lengths_mask (`tuple[float, float]`):
            The span covers a fraction drawn uniformly from this range.
        num_frames (`int`):
            Padded mel length `n` of the batch.
        generator (`torch.Generator`, *optional*):
            Random generator on the device of `lengths`.

    Returns:
        `torch.BoolTensor` of shape `(batch_size, num_frames)`, True inside the span.
    """
    low, high = frac_lengths_mask
    frac = torch.rand(lengths.shape, generator=generator, device=lengths.device) * (high - low) + low  # (b,)
    span = (frac * lengths).long()
    max_start = lengths - span
    start = (max_start * torch.rand(lengths.shape, generator=generator, device=lengths.device)).long().clamp(min=0)
    positions = torch.arange(num_frames, device=lengths.device)[None]  # (1, n)
    return (positions >= start[:, None]) & (positions < (start + span)[:, None])  # (b, n)


def flow_matching_loss(
    model,
    mel: torch.Tensor,
    mel_lengths: torch.Tensor,
    text_ids: torch.Tensor,
    audio_drop_prob: float = 0.3,
    cond_drop_prob: float = 0.2,
    frac_lengths_mask: tuple[float, float] = (0.7, 1.0),
    generator=None,
    text_durations: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""
    The conditional flow-matching loss of F5-TTS (`CFM.forward`, eq. 16 of the paper) on one batch.

    With data `x1` (the mel), noise `x0 ~ N(0, I)` and `t ~ U(0, 1)`, the model sees `x_t = (1 - t) x0 + t x1`,
    the mel itself with a random span zeroed as its prompt, and the transcript, and regresses the velocity
    `x1 - x0` with a mean squared error over the zeroed span only.

    Args:
        model ([`DiTTransformerModel`] or its distributed wrapper):
            The speech generator.
        mel (`torch.Tensor` of shape `(batch_size, num_frames, 100)`):
            Log-mel spectrograms, padded at the end.
        mel_lengths (`torch.LongTensor` of shape `(batch_size,)`):
            Valid frames per sample; padded frames are hidden from the model and from the loss.
        text_ids (`torch.LongTensor` of shape `(batch_size, num_tokens)`):
            Token ids padded with -1.
        audio_drop_prob (`float`, *optional*, defaults to 0.3):
            Chance of dropping the prompt audio for the whole batch (Voicebox's p_drop).
        cond_drop_prob (`float`, *optional*, defaults to 0.2):
            Chance of dropping both prompt audio and text for the whole batch (Voicebox's p_uncond), which
            trains the unconditional branch of classifier-free guidance.
        frac_lengths_mask (`tuple[float, float]`, *optional*, defaults to `(0.7, 1.0)`):
            Range of the fraction of each utterance to infill.
        generator (`torch.Generator`, *optional*):
            Random generator on the device of `mel`, for reproducible noise, times, spans and drops.
        text_durations (`torch.LongTensor` of shape `(batch_size, num_tokens)`, *optional*):
            Frames per token (forced alignment) for a model with average text upsampling; by default the tokens
            share the frames evenly.

    Returns:
        `torch.Tensor`: the scalar loss.
    """
    b, n, _ = mel.shape
    device = mel.device
    attention_mask = torch.arange(n, device=device)[None] < mel_lengths[:, None]  # (b, n)
    span = random_span_mask(mel_lengths, frac_lengths_mask, n, generator=generator) & attention_mask  # (b, n)

    x1 = mel
    x0 = torch.randn(mel.shape, generator=generator, device=device, dtype=mel.dtype)  # (b, n, c)
    time = torch.rand((b,), generator=generator, device=device, dtype=mel.dtype)  # (b,), 0 = noise
    t = time[:, None, None]
    x_t = (1 - t) * x0 + t * x1
    flow = x1 - x0
    cond = torch.where(span[..., None], torch.zeros_like(x1), x1)  # the prompt: everything but the span

    # One draw per batch, as F5-TTS does.
    drop_audio_cond = bool(torch.rand((), generator=generator, device=device) < audio_drop_prob)
    drop_text = bool(torch.rand((), generator=generator, device=device) < cond_drop_prob)
    drop_audio_cond = drop_audio_cond or drop_text

    pred = model(
        x_t,
        cond=cond,
        timestep=time,
        text_ids=text_ids,
        attention_mask=attention_mask,
        drop_audio_cond=drop_audio_cond,
        drop_text=drop_text,
        **({} if text_durations is None else {"text_durations": text_durations}),
    ).sample  # (b, n, c)
    loss = F.mse_loss(pred.float(), flow.float(), reduction="none")  # (b, n, c)
    return loss[span].mean()


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


def load_speech_dataset(args) -> Dataset:
    """The split `--dataset_split` of `--dataset`, with its audio and text columns checked."""
    path = args.dataset
    saved_to_disk = os.path.isdir(path) and (
        os.path.isfile(os.path.join(path, "state.json")) or os.path.isfile(os.path.join(path, "dataset_dict.json"))
    )
    if saved_to_disk:
        dataset = load_from_disk(path)
        if isinstance(dataset, DatasetDict):
            if args.dataset_split not in dataset:
                raise ValueError(
                    f"--dataset_split {args.dataset_split!r} is not a split of {path!r}; its splits are "
                    f"{sorted(dataset)}: pass one of them with --dataset_split."
                )
            dataset = dataset[args.dataset_split]
    else:
        if not os.path.exists(path) and (path.startswith((".", "/", "~")) or path.count("/") > 1):
            raise FileNotFoundError(f"--dataset {path!r} does not exist: pass a dataset folder or a Hub dataset id.")
        dataset = load_dataset(path, args.dataset_config_name, split=args.dataset_split)

    for option, column in (("--audio_column", args.audio_column), ("--text_column", args.text_column)):
        if column not in dataset.column_names:
            raise ValueError(
                f"{option} {column!r} is not a column of the dataset {path!r}; its columns are "
                f"{dataset.column_names}: pass the right name with {option}."
            )
    return dataset


def clip_durations(
    dataset: Dataset, audio_column: str, duration_column: str | None, show_progress: bool = True
) -> list[float]:
    """Duration in seconds of every clip: the `duration_column` when the dataset has one (F5-TTS stores it),
    else the audio header (datasets 4+ hands out lazy torchcodec decoders; nothing is decoded), else the samples."""
    if duration_column and duration_column in dataset.column_names:
        return [float(value) for value in dataset[duration_column]]
    durations = []
    for audio in tqdm(dataset[audio_column], desc="Reading clip durations", disable=not show_progress):
        metadata = getattr(audio, "metadata", None)
        duration = getattr(metadata, "duration_seconds_from_header", None) or getattr(
            metadata, "duration_seconds", None
        )
        if duration is None:
            duration = load_audio(audio).shape[-1] / SAMPLING_RATE
        durations.append(float(duration))
    return durations


class SpeechTextDataset(torch.utils.data.Dataset):
    """Rows of a `datasets` dataset → `{"mel": (n, 100) log-mel at 24 kHz, "text": str}` (+ `"durations"`).

    Args:
        dataset (`datasets.Dataset`):
            The speech dataset.
        audio_column (`str`), text_column (`str`):
            Its columns.
        indices (`list[int]`):
            The rows to train on (after filtering by duration).
        mels (`list[torch.Tensor]`, *optional*):
            The mels of those rows, computed once (then no audio is decoded).
        durations (`list[torch.Tensor]`, *optional*):
            Frames per token of those rows (forced alignment), returned as `"durations"`.
    """

    def __init__(self, dataset: Dataset, audio_column: str, text_column: str, indices: list[int], mels=None,
                 durations=None):  # fmt: skip
        self.dataset = dataset.select_columns([audio_column, text_column])
        self.audio_column = audio_column
        self.text_column = text_column
        self.indices = indices
        self.mels, self.durations = mels, durations

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        if self.mels is not None:
            item = {"mel": self.mels[index].float(), "text": self.dataset[int(self.indices[index])][self.text_column]}
        else:
            row = self.dataset[int(self.indices[index])]
            waveform = load_audio(row[self.audio_column], sampling_rate=SAMPLING_RATE)  # (nw,)
            mel = log_mel_spectrogram(waveform[None])[0].transpose(0, 1)  # (n, 100)
            item = {"mel": mel, "text": row[self.text_column]}
        if self.durations is not None:
            item["durations"] = self.durations[index]
        return item


class SpeechTextCollator:
    """Pads mels with zeros (as F5-TTS's `collate_fn`) and tokenizes the transcripts (padding -1)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict]) -> dict:
        mel_lengths = torch.tensor([item["mel"].shape[0] for item in items], dtype=torch.long)
        mel = torch.nn.utils.rnn.pad_sequence([item["mel"] for item in items], batch_first=True)  # (b, n, 100)
        text_ids = self.tokenizer.text_to_ids([item["text"] for item in items])  # (b, nt)
        batch = {"mel": mel, "mel_lengths": mel_lengths, "text_ids": text_ids}
        if "durations" in items[0]:
            batch["text_durations"] = torch.nn.utils.rnn.pad_sequence([item["durations"] for item in items],
                                                                      batch_first=True)  # (b, nt), 0 over padding
        return batch


class LengthGroupedBatchSampler(torch.utils.data.Sampler):
    """Batches of dataset positions, reshuffled every epoch from `seed + epoch` so that a resumed run sees
    the same order.

    Without `max_frames_per_batch`, batches are `batch_size` random samples. With it, samples are sorted by
    length and packed greedily into batches of at most `max_frames_per_batch` frames and `batch_size`
    samples, and the order of those batches is shuffled (F5-TTS's `DynamicBatchSampler`).

    It has no `batch_size` attribute on purpose: accelerate then shards it as batches of varying size and,
    with `even_batches`, gives every process the same number of batches.

    Args:
        lengths (`list[int]`):
            Mel frames of every sample.
        batch_size (`int`):
            Samples per batch (an upper bound with `max_frames_per_batch`).
        max_frames_per_batch (`int`, *optional*):
            Frame budget of a batch.
        seed (`int`, *optional*, defaults to 0):
            Shuffling seed, the same on every process.
    """

    drop_last = False

    def __init__(self, lengths: list[int], batch_size: int, max_frames_per_batch: int | None = None, seed: int = 0):
        self.lengths = lengths
        self.max_batch_samples = batch_size
        self.max_frames_per_batch = max_frames_per_batch
        self.seed = seed
        self.epoch = 0
        self.frame_batches = None
        if max_frames_per_batch is not None:
            self.frame_batches = []
            batch, frames = [], 0
            for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
                if batch and (frames + lengths[index] > max_frames_per_batch or len(batch) == batch_size):
                    self.frame_batches.append(batch)
                    batch, frames = [], 0
                batch.append(index)
                frames += lengths[index]
            if batch:
                self.frame_batches.append(batch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.frame_batches is not None:
            return len(self.frame_batches)
        return math.ceil(len(self.lengths) / self.max_batch_samples)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.frame_batches is not None:
            order = torch.randperm(len(self.frame_batches), generator=generator).tolist()
            yield from (self.frame_batches[i] for i in order)
            return
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        for start in range(0, len(order), self.max_batch_samples):
            yield order[start : start + self.max_batch_samples]


# ----------------------------------------------------------------------------------------------------------------
# Model, tokenizer, checkpoints
# ----------------------------------------------------------------------------------------------------------------


ALIGNMENT_FILE = "text_alignment.pt"


def compute_mels(dataset: Dataset, args, indices: list[int], show_progress: bool) -> list[torch.Tensor]:
    """The log-mel `(n, 100)` of every kept row, in float16 (kept in memory for the whole run)."""
    loader = torch.utils.data.DataLoader(
        SpeechTextDataset(dataset, args.audio_column, args.text_column, indices),
        batch_size=None, num_workers=max(args.dataloader_num_workers, 2),
    )  # fmt: skip
    return [item["mel"].half() for item in tqdm(loader, desc="Computing mels", disable=not show_progress)]


def align_text(args, dataset: Dataset, indices: list[int], texts: list[str], tokenizer, accelerator: Accelerator):
    """`--text_alignment viterbi`: the mels of the kept rows and their tokens' frames, found by forced alignment
    (`deepdubber_hf.alignment`), and the tokenizer with the mean frames per token type as its `frame_weights` and
    the alignment HMM as its `aligner` (saved to `output_dir/tokenizer`, so that generation spreads new text and
    aligns a reference voice's transcript the same way).

    The main process aligns and writes `output_dir/text_alignment.pt` (durations and weights) atomically; a rerun
    with the same rows and vocabulary reads it back instead of aligning again.
    """
    mels = compute_mels(dataset, args, indices, accelerator.is_local_main_process)
    path = os.path.join(args.output_dir, ALIGNMENT_FILE)
    save_dir = os.path.join(args.output_dir, "tokenizer")
    vocab = [tokenizer.convert_ids_to_tokens(i) for i in range(tokenizer.vocab_size)]
    dataset_name = os.path.abspath(args.dataset) if os.path.exists(args.dataset) else args.dataset
    key = {"dataset": dataset_name, "indices": indices, "vocab": vocab}
    saved = torch.load(path, weights_only=True) if os.path.isfile(path) else None
    if saved is not None and saved["key"] != key:
        raise ValueError(
            f"{path} was aligned for other rows or another vocabulary: delete it (or use a new --output_dir) to "
            "align again."
        )
    if saved is None and accelerator.is_main_process:
        token_ids = [tokenizer.text_to_ids(text)[0].tolist() for text in tqdm(texts, desc="Tokenizing")]
        features = [cepstral_features(mel.float()) for mel in mels]
        marks, pauses = silent_token_ids(vocab)
        durations, aligner = align_utterances(features, token_ids, tokenizer.vocab_size, skippable_ids=pauses,
                                              mark_ids=marks)  # fmt: skip
        weights, edges = token_frame_weights(token_ids, durations, tokenizer.vocab_size)
        atomic_torch_save({"key": key, "durations": [torch.from_numpy(d) for d in durations], "frame_weights": weights,
                           "edge_frames": edges, "aligner": aligner}, path)  # fmt: skip
        logger.info(f"Aligned {len(durations)} utterances into {path}.")
    accelerator.wait_for_everyone()
    saved = torch.load(path, weights_only=True)
    tokenizer = DeepDubberTokenizer(tokenizer.vocab_file, tokenizer_mode=tokenizer.tokenizer_mode,
                                    phoneme_language=tokenizer.phoneme_language, frame_weights=saved["frame_weights"],
                                    edge_frames=saved["edge_frames"], aligner=saved["aligner"])  # fmt: skip
    if accelerator.is_main_process:
        tokenizer.save_pretrained(save_dir)
    return mels, saved["durations"], tokenizer


def atomic_torch_save(obj, path: str) -> None:
    """`torch.save` to a temporary file in the same folder, then rename (a crash leaves no half-written file)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_tokenizer(args, texts: list[str], accelerator: Accelerator):
    """`--tokenizer_name_or_path`, else the `tokenizer/` of `--pretrained_model_name_or_path`, else a vocabulary
    built from the transcripts by the main process (the others read it back, so every process agrees)."""
    if args.tokenizer_name_or_path:
        return DeepDubberTokenizer.from_pretrained(args.tokenizer_name_or_path)
    pretrained = args.pretrained_model_name_or_path
    if pretrained and os.path.isdir(os.path.join(pretrained, "tokenizer")):
        return DeepDubberTokenizer.from_pretrained(os.path.join(pretrained, "tokenizer"))
    save_dir = os.path.join(args.output_dir, "tokenizer")
    if args.resume_from_checkpoint and os.path.isdir(save_dir):
        return DeepDubberTokenizer.from_pretrained(save_dir)
    if accelerator.is_main_process:
        DeepDubberTokenizer.from_texts(texts, save_dir, tokenizer_mode=args.tokenizer_mode)
    accelerator.wait_for_everyone()
    return DeepDubberTokenizer.from_pretrained(save_dir)


def load_transformer(args, vocab_size: int) -> DiTTransformerModel:
    """The transformer to train: `--pretrained_model_name_or_path` or a fresh one from `--model_config`."""
    overrides = {"text_upsampling": args.text_upsampling} if args.text_upsampling else {}
    if args.pretrained_model_name_or_path:
        path = args.pretrained_model_name_or_path
        if os.path.isdir(os.path.join(path, "transformer")):
            model = DiTTransformerModel.from_pretrained(path, subfolder="transformer", **overrides)
        elif os.path.isdir(path) or not os.path.exists(path):  # a transformer folder or a Hub id
            model = DiTTransformerModel.from_pretrained(path, **overrides)
        else:
            raise ValueError(
                f"--pretrained_model_name_or_path {path!r} is not a folder: pass a model folder (with a "
                "`transformer/` subfolder) or a transformer folder."
            )
        if model.config.vocab_size != vocab_size:
            raise ValueError(
                f"the pretrained transformer has vocab_size {model.config.vocab_size} but the tokenizer has "
                f"{vocab_size} tokens: pass the tokenizer the model was trained with (--tokenizer_name_or_path)."
            )
        return model

    if args.model_config in MODEL_CONFIGS:
        config = dict(MODEL_CONFIGS[args.model_config])
    elif os.path.isfile(args.model_config):
        config = DiTTransformerModel.load_config(args.model_config)
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        if "vocab_size" in config and config["vocab_size"] != vocab_size:
            raise ValueError(
                f"--model_config {args.model_config!r} has vocab_size {config['vocab_size']} but the tokenizer has "
                f"{vocab_size} tokens: remove vocab_size from the config (it follows the tokenizer) or pass "
                "the matching tokenizer."
            )
    else:
        raise ValueError(
            f"--model_config {args.model_config!r} is neither one of {sorted(MODEL_CONFIGS)} nor a JSON file: "
            "pass a preset name or the path of a DiTTransformerModel config.json."
        )
    config.update(vocab_size=vocab_size, **overrides)
    return DiTTransformerModel.from_config(config)


def load_vocoder(args) -> VocosVocoder | GriffinLimVocoder:
    """`--vocoder_name_or_path`, through :func:`deepdubber_hf.models.vocoder.load_vocoder`."""
    return load_vocoder_from(args.vocoder_name_or_path)


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="DeepDubber stage 2.1: flow-matching pre-training of the speech generator."
    )
    # Data
    parser.add_argument(
        "--dataset",
        type=str,
        required=True,
        help="A `save_to_disk` folder, or anything `load_dataset` accepts (parquet folder, audiofolder, Hub id).",
    )
    parser.add_argument("--dataset_config_name", type=str, default=None, help="Configuration name for `load_dataset`.")
    parser.add_argument(
        "--dataset_split",
        type=str,
        default="train",
        help="Split to train on (of a saved DatasetDict or of what load_dataset reads).",
    )
    parser.add_argument(
        "--audio_column", type=str, default="audio", help="Column with the speech (Audio feature, path or array)."
    )
    parser.add_argument("--text_column", type=str, default="text", help="Column with the transcript.")
    parser.add_argument(
        "--duration_column",
        type=str,
        default="duration",
        help="Column of clip durations in seconds, used for bucketing if present (else the audio headers are read).",
    )
    parser.add_argument(
        "--max_duration_s",
        type=float,
        default=30.0,
        help="Clips longer than this are left out (F5-TTS keeps 0.3-30 s).",
    )
    parser.add_argument("--min_duration_s", type=float, default=0.3, help="Clips shorter than this are left out.")
    # Model and tokenizer
    parser.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        default=None,
        help="A model folder with a `transformer/` subfolder (and optionally `tokenizer/`), or a transformer folder.",
    )
    parser.add_argument(
        "--model_config",
        type=str,
        default="base",
        help="For a fresh model: 'tiny', 'mini' (the embedded default), 'small' (F5-TTS v1 Small), 'base' (F5-TTS "
        "v1 Base) or a config.json path.",
    )
    parser.add_argument(
        "--text_upsampling",
        type=str,
        default=None,
        choices=["pad", "average"],
        help="Override the model's text upsampling ('pad' = F5-TTS, 'average' = ZipVoice).",
    )
    parser.add_argument(
        "--text_alignment",
        type=str,
        default="none",
        choices=["none", "viterbi"],
        help="'viterbi': find each token's frames in the training speech by forced alignment and train the average "
        "upsampling on them (the tokenizer keeps the mean frames per token for generation); also keeps the mels "
        "in memory. 'none': tokens share the frames evenly.",
    )
    parser.add_argument(
        "--tokenizer_name_or_path",
        type=str,
        default=None,
        help="A saved DeepDubberTokenizer; by default one is built from the transcripts.",
    )
    parser.add_argument(
        "--tokenizer_mode",
        type=str,
        default="char",
        choices=["char", "phoneme"],
        help="Vocabulary built from the transcripts: characters or espeak-ng phonemes.",
    )
    parser.add_argument(
        "--gradient_checkpointing",
        action="store_true",
        help="Recompute activations in the backward pass to save memory.",
    )
    # Loss (F5-TTS CFM)
    parser.add_argument(
        "--audio_drop_prob", type=float, default=0.3, help="Chance of dropping the prompt audio (per batch)."
    )
    parser.add_argument(
        "--cond_drop_prob",
        type=float,
        default=0.2,
        help="Chance of dropping prompt audio and text together (per batch).",
    )
    parser.add_argument(
        "--frac_lengths_mask",
        type=float,
        nargs=2,
        default=[0.7, 1.0],
        metavar=("LOW", "HIGH"),
        help="Range of the fraction of each utterance to infill.",
    )
    # Optimisation
    parser.add_argument(
        "--train_batch_size",
        type=int,
        default=32,
        help="Samples per batch per process (an upper bound with --max_frames_per_batch).",
    )
    parser.add_argument(
        "--max_frames_per_batch",
        type=int,
        default=None,
        help="Frame budget per batch per process (F5-TTS: 38400); enables length-sorted batching.",
    )
    parser.add_argument(
        "--num_train_epochs", type=int, default=11, help="Epochs, when --max_train_steps is not given."
    )
    parser.add_argument(
        "--max_train_steps", type=int, default=None, help="Optimiser steps in total; overrides --num_train_epochs."
    )
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Batches per optimiser step.")
    parser.add_argument("--learning_rate", type=float, default=7.5e-5, help="Peak learning rate.")
    parser.add_argument(
        "--lr_warmup_steps",
        type=int,
        default=20000,
        help="Linear warm-up steps, then linear decay to 0 at --max_train_steps.",
    )
    parser.add_argument("--adam_beta1", type=float, default=0.9)
    parser.add_argument("--adam_beta2", type=float, default=0.999)
    parser.add_argument("--adam_weight_decay", type=float, default=1e-2)
    parser.add_argument("--adam_epsilon", type=float, default=1e-8)
    parser.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping; 0 disables it.")
    parser.add_argument(
        "--mixed_precision",
        type=str,
        default=None,
        choices=["no", "fp16", "bf16"],
        help="Overrides the accelerate config.",
    )
    parser.add_argument("--ema_decay", type=float, default=0.9999, help="Final EMA decay.")
    parser.add_argument(
        "--ema_update_after_step",
        type=int,
        default=100,
        help="The EMA copies the weights until this step (ema_pytorch's default, as F5-TTS).",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of the data order and (offset by the process index) of the noise."
    )
    parser.add_argument("--dataloader_num_workers", type=int, default=0, help="Processes decoding audio.")
    # Output
    parser.add_argument("--output_dir", type=str, required=True, help="Where checkpoints and the final model go.")
    parser.add_argument(
        "--checkpointing_steps", type=int, default=50000, help="Save a resumable checkpoint every N optimiser steps."
    )
    parser.add_argument(
        "--checkpoints_total_limit", type=int, default=None, help="Keep only the newest N checkpoints."
    )
    parser.add_argument(
        "--resume_from_checkpoint",
        type=str,
        default=None,
        help="A checkpoint folder, or 'latest' for the newest in --output_dir (starts afresh if none).",
    )
    parser.add_argument(
        "--vocoder_name_or_path",
        type=str,
        default=None,
        help="'griffin_lim' (no weights), a VocosVocoder folder or an official Vocos folder (config.yaml + "
        "pytorch_model.bin): the output then is a complete DeepDubberPipeline folder (with model_index.json).",
    )
    parser.add_argument(
        "--save_raw_transformer",
        action="store_true",
        help="Also save the non-EMA weights to OUTPUT_DIR/transformer_raw.",
    )
    parser.add_argument(
        "--report_to",
        type=str,
        default="tensorboard",
        help="Tracker for accelerate ('tensorboard', 'wandb', 'all' or 'none').",
    )
    parser.add_argument("--logging_dir", type=str, default="logs", help="Tracker folder, inside --output_dir.")
    args = parser.parse_args(input_args)

    low, high = args.frac_lengths_mask
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"--frac_lengths_mask {low} {high} must satisfy 0 < LOW <= HIGH <= 1: pass e.g. 0.7 1.0.")
    for name in ("audio_drop_prob", "cond_drop_prob"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name} {getattr(args, name)} is not a probability: pass a value in [0, 1].")
    for name in ("train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "num_train_epochs"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    for name in ("max_train_steps", "max_frames_per_batch", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1 (or left out), got {getattr(args, name)}.")
    if args.lr_warmup_steps < 0:
        raise ValueError(f"--lr_warmup_steps must be >= 0, got {args.lr_warmup_steps}.")
    if not 0.0 <= args.ema_decay <= 1.0:
        raise ValueError(f"--ema_decay {args.ema_decay} must be in [0, 1].")
    return args


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


def check_launch(accelerator: Accelerator) -> None:
    """Catch launches where accelerate quietly runs fewer processes than asked for."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and accelerator.num_processes == 1:
        # torchrun started several copies, but without a GPU and without ACCELERATE_USE_CPU each one trains alone.
        raise ValueError(
            f"this script was launched as {world_size} processes but accelerate set up a single-process run in each "
            "(no GPU found): on a CPU-only machine launch with `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu "
            "--num_processes N ...`, or give the processes GPUs."
        )
    if accelerator.num_processes == 1 and os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"):
        if "MASTER_PORT" in os.environ and "WORLD_SIZE" not in os.environ:
            # `accelerate launch --cpu --num_processes N` expects mpirun to start the N processes.
            logger.warning(
                "`accelerate launch --cpu --num_processes N` starts one process unless run through mpirun "
                "(--mpirun_hostfile); for N processes of gloo DDP on the CPU use "
                "`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N ...`. Training on 1 process."
            )


def save_averaged(ema: EMAModel, averaged: list, path: str) -> None:
    """A loadable transformer folder holding the EMA's `averaged` weights (whole: see `full_tensors`) and, in its
    config, the EMA's settings and step, as `EMAModel.save_pretrained` writes it (which reads the EMA's own
    weights, only a shard of each under FSDP)."""
    model = ema.model_cls.from_config(ema.model_config)
    settings = ema.state_dict()
    settings.pop("shadow_params", None)
    model.register_to_config(**settings)
    with torch.no_grad():
        for param, value in zip(model.parameters(), averaged, strict=True):
            param.copy_(value)
    model.save_pretrained(path)


def main(args: argparse.Namespace) -> None:
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
        ),
        # Whole-batch drops still route every parameter through the graph, so DDP needs no unused-parameter search.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        transformers.utils.logging.set_verbosity_warning()
    else:
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
    check_launch(accelerator)
    if is_sharded(accelerator) and not accelerator.is_fsdp2:
        raise ValueError("under FSDP this script keeps its EMA on FSDP 2's sharded weights: set fsdp_version: 2 in the "
                         "accelerate config (as configs/accelerate/fsdp.yaml does).")  # fmt: skip
    set_seed(args.seed, device_specific=True)  # a different noise stream per process
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    accelerator.wait_for_everyone()

    # 1. Data: check the columns, measure and filter the clips.
    raw_dataset = load_speech_dataset(args)
    durations = clip_durations(
        raw_dataset, args.audio_column, args.duration_column, show_progress=accelerator.is_local_main_process
    )
    indices = [i for i, d in enumerate(durations) if args.min_duration_s <= d <= args.max_duration_s]
    if not indices:
        raise ValueError(
            f"no clip of --dataset {args.dataset!r} lasts between --min_duration_s {args.min_duration_s} and "
            f"--max_duration_s {args.max_duration_s} (the clips last {min(durations, default=0):.2f}-"
            f"{max(durations, default=0):.2f} s): widen the range."
        )
    logger.info(f"{len(indices)} of {len(durations)} clips kept ({args.min_duration_s}-{args.max_duration_s} s).")
    lengths = [num_mel_frames(int(durations[i] * SAMPLING_RATE), HOP_LENGTH) for i in indices]
    if args.max_frames_per_batch is not None and max(lengths) > args.max_frames_per_batch:
        raise ValueError(
            f"a clip has {max(lengths)} mel frames, more than --max_frames_per_batch {args.max_frames_per_batch}: "
            "raise --max_frames_per_batch or lower --max_duration_s."
        )

    # 2. Tokenizer and model.
    all_texts = list(raw_dataset[args.text_column])
    empty = [i for i in indices if not isinstance(all_texts[i], str) or not all_texts[i].strip()]
    if empty:
        raise ValueError(
            f"rows {empty[:10]} of --text_column {args.text_column!r} hold no text ({len(empty)} rows in all): "
            "fill in their transcripts or drop them from --dataset."
        )
    texts = [all_texts[i] for i in indices]
    tokenizer = load_tokenizer(args, texts, accelerator)
    if tokenizer.tokenizer_mode == "char":  # fail now rather than in the middle of an epoch (cheap in char mode)
        try:
            tokenizer.tokenize("".join(sorted(set("".join(texts)))))
        except ValueError as error:
            raise ValueError(
                f"the transcripts of --dataset {args.dataset!r} do not fit the tokenizer: {error}"
            ) from error
    mels = token_durations = None
    if args.text_alignment == "viterbi":
        mels, token_durations, tokenizer = align_text(args, raw_dataset, indices, texts, tokenizer, accelerator)
    model = load_transformer(args, tokenizer.vocab_size)
    if args.text_alignment == "viterbi" and model.config.text_upsampling != "average":
        raise ValueError("--text_alignment viterbi needs a model with average text upsampling: add "
                         "--text_upsampling average.")  # fmt: skip
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    logger.info(
        f"Training a DiTTransformerModel of {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters."
    )

    # 3. Data loader, sharded by accelerate (every process gets the same number of batches).
    batch_sampler = LengthGroupedBatchSampler(
        lengths, args.train_batch_size, max_frames_per_batch=args.max_frames_per_batch, seed=args.seed
    )
    train_dataloader = torch.utils.data.DataLoader(
        SpeechTextDataset(raw_dataset, args.audio_column, args.text_column, indices, mels, token_durations),
        batch_sampler=batch_sampler,
        collate_fn=SpeechTextCollator(tokenizer),
        num_workers=args.dataloader_num_workers,
        persistent_workers=args.dataloader_num_workers > 0,
    )
    train_dataloader = accelerator.prepare(train_dataloader)
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * num_update_steps_per_epoch
    num_train_epochs = math.ceil(args.max_train_steps / num_update_steps_per_epoch)

    # 4. Optimiser and schedule (F5-TTS: AdamW, linear warm-up, linear decay). The prepared scheduler steps once
    # per process per optimiser step, hence the counts times num_processes (as in the diffusers examples).
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    lr_scheduler = get_scheduler(
        "linear",
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)

    # 5. EMA with ema_pytorch's schedule (F5-TTS): a copy for the first steps, then
    # decay = min(ema_decay, 1 - (1 + k)^(-2/3)). Saved as a loadable transformer folder inside each checkpoint.
    unwrapped = accelerator.unwrap_model(model)
    ema = EMAModel(
        unwrapped.parameters(),
        decay=args.ema_decay,
        update_after_step=args.ema_update_after_step,
        use_ema_warmup=True,
        inv_gamma=1.0,
        power=2 / 3,
        model_cls=DiTTransformerModel,
        model_config=unwrapped.config,
    )

    def save_ema_hook(models, weights, output_dir):
        averaged = full_tensors(ema.shadow_params)  # every process: under FSDP, each holds a shard of the average
        if accelerator.is_main_process:
            save_averaged(ema, averaged, os.path.join(output_dir, EMA_FOLDER))

    def load_ema_hook(models, input_dir):
        path = os.path.join(input_dir, EMA_FOLDER)
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"checkpoint {input_dir!r} has no {EMA_FOLDER}/: it was not written by this script."
            )
        # What EMAModel.from_pretrained does, without its deprecated config-from-path call.
        ema_config = DiTTransformerModel.load_config(path)
        averaged = DiTTransformerModel.from_pretrained(path)
        state = {key: ema_config[key] for key in ema.state_dict() if key in ema_config}
        state["shadow_params"] = shard_like([p.detach() for p in averaged.parameters()], list(unwrapped.parameters()))
        ema.load_state_dict(state)

    accelerator.register_save_state_pre_hook(save_ema_hook)
    accelerator.register_load_state_pre_hook(load_ema_hook)

    # 6. Resume.
    global_step = resume(accelerator, args.output_dir, args.resume_from_checkpoint)
    first_epoch = global_step // num_update_steps_per_epoch
    resume_batches = (global_step % num_update_steps_per_epoch) * args.gradient_accumulation_steps

    log_path = open_train_log(accelerator, args.output_dir, global_step)
    if accelerator.is_main_process:
        tracker_config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in vars(args).items()}
        accelerator.init_trackers("train_tts", config=tracker_config)

    # 7. Train.
    logger.info(
        f"{len(indices)} clips, {len(train_dataloader)} batches per process per epoch, {num_train_epochs} epochs, "
        f"{args.max_train_steps} optimiser steps, {accelerator.num_processes} processes, from step {global_step}."
    )
    progress_bar = tqdm(
        range(args.max_train_steps),
        initial=global_step,
        desc="Steps",
        disable=not accelerator.is_local_main_process,
    )
    step_losses = []  # the batches of the current optimiser step (fewer than accumulated at the end of an epoch)
    for epoch in range(first_epoch, num_train_epochs):
        if global_step >= args.max_train_steps:
            break
        batch_sampler.set_epoch(epoch)
        model.train()
        dataloader = train_dataloader
        if epoch == first_epoch and resume_batches > 0:
            dataloader = accelerator.skip_first_batches(train_dataloader, resume_batches)
        for batch in dataloader:
            with accelerator.accumulate(model):
                loss = flow_matching_loss(
                    model,
                    batch["mel"],
                    batch["mel_lengths"],
                    batch["text_ids"],
                    audio_drop_prob=args.audio_drop_prob,
                    cond_drop_prob=args.cond_drop_prob,
                    frac_lengths_mask=tuple(args.frac_lengths_mask),
                    text_durations=batch.get("text_durations"),
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            step_losses.append(accelerator.gather(loss.detach()).mean().item())

            if accelerator.sync_gradients:
                ema.step(unwrapped.parameters())
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
                    save_checkpoint(accelerator, args.output_dir, global_step, args.checkpoints_total_limit)
                if global_step >= args.max_train_steps:
                    break
    progress_bar.close()

    # 8. Save the EMA transformer (what inference uses), the tokenizer and the sampling scheduler.
    # Every process takes part: under FSDP the weights and their average are gathered from the shards.
    accelerator.wait_for_everyone()
    if args.save_raw_transformer:
        (raw,) = whole_models(accelerator, model)
        if accelerator.is_main_process:
            raw.save_pretrained(os.path.join(args.output_dir, "transformer_raw"), safe_serialization=True)
    ema.copy_to(unwrapped.parameters())
    (transformer,) = whole_models(accelerator, model)
    if accelerator.is_main_process:
        if args.vocoder_name_or_path:
            pipeline = DeepDubberPipeline(
                transformer=transformer, scheduler=FlowMatchSwayScheduler(), vocoder=load_vocoder(args),
                tokenizer=tokenizer,
            )
            pipeline.save_pretrained(args.output_dir)
            logger.info(f"Saved a DeepDubberPipeline (EMA transformer) to {args.output_dir}")
        else:
            transformer.save_pretrained(os.path.join(args.output_dir, "transformer"), safe_serialization=True)
            tokenizer.save_pretrained(os.path.join(args.output_dir, "tokenizer"))
            FlowMatchSwayScheduler().save_pretrained(os.path.join(args.output_dir, "scheduler"))
            logger.info(f"Saved the EMA transformer, tokenizer and scheduler to {args.output_dir}")
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
