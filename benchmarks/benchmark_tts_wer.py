"""Intelligibility of a stage-2.1 speech generator while it trains: each held-out clip's line, spoken in the voice of
the clip's reference utterance (F5-TTS's length rule, Griffin-Lim), transcribed by the offline Whisper-base.

    python benchmarks/benchmark_tts_wer.py --transformer runs/tts/checkpoint-1500/transformer_ema \
        --tokenizer runs/tts/tokenizer --dataset /work/rc/eval --num_clips 12 [--save_dir wavs/] [--no_reference]

`--transformer` is any DiT folder: a checkpoint's `transformer_ema/` or a finished run's `transformer/`. Prints one
JSON line (WER in %, the first transcripts, the machine).
"""

import argparse
import json
import os
import platform

import datasets
import numpy as np
import torch

from deepdubber_hf import DeepDubberPipeline, DeepDubberTokenizer, DiTTransformerModel, FlowMatchSwayScheduler
from deepdubber_hf.audio import save_audio
from deepdubber_hf.evaluation.asr import WhisperASR
from deepdubber_hf.evaluation.wer import word_error_rate
from deepdubber_hf.models import GriffinLimVocoder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transformer", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--dataset_config_name", default="level1")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num_clips", type=int, default=12)
    parser.add_argument("--steps", type=int, default=16, help="Sampling steps.")
    parser.add_argument("--guidance_scale", type=float, default=2.0)
    parser.add_argument("--save_dir", default=None, help="Also write the speech as wav files, to listen to.")
    parser.add_argument("--no_reference", action="store_true",
                        help="Speak each line in the model's own voice, as long as it would be with the reference "
                        "(F5-TTS's length rule); separates the voice from the words.")
    args = parser.parse_args(argv)

    pipe = DeepDubberPipeline(DiTTransformerModel.from_pretrained(args.transformer).eval(), FlowMatchSwayScheduler(),
                              GriffinLimVocoder(), DeepDubberTokenizer.from_pretrained(args.tokenizer))
    pipe.set_progress_bar_config(disable=True)
    rows = datasets.load_dataset(args.dataset, args.dataset_config_name, split=args.split)
    rows = rows.select(range(min(args.num_clips, len(rows))))
    asr = WhisperASR()
    references, hypotheses = [], []
    for index, row in enumerate(rows):
        voice = {"reference_audio": row["reference_audio"], "reference_text": row["reference_text"]}
        if args.no_reference:
            prompt, _ = pipe.prepare_reference(row["reference_audio"], "cpu", torch.float32)
            frames = pipe.total_frames(prompt.shape[0], row["reference_text"], row["transcript"], None, 1.0)
            voice = {"duration_in_s": (frames - prompt.shape[0]) / pipe.frames_per_second}
        out = pipe(row["transcript"], **voice, num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                   generator=torch.Generator().manual_seed(index))
        speech = out.audios[0].astype(np.float32)
        if args.save_dir:
            os.makedirs(args.save_dir, exist_ok=True)
            save_audio(os.path.join(args.save_dir, f"{row['clip_id']}.wav"), speech)
        references.append(row["transcript"])
        hypotheses.append(asr.transcribe(speech, out.sampling_rate))
    print(json.dumps({
        "transformer": args.transformer, "clips": len(references), "steps": args.steps,
        "guidance_scale": args.guidance_scale, "reference_voice": not args.no_reference,
        "wer": round(100 * word_error_rate(references, hypotheses), 2),
        "examples": [{"line": r, "heard": h} for r, h in list(zip(references, hypotheses))[:4]],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
    }))


if __name__ == "__main__":
    main()
