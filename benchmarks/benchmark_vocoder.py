"""Copy synthesis: how much intelligibility a vocoder loses. Ground-truth speech → log-mel → vocoder →
Whisper-base, against Whisper-base on the ground-truth speech itself, on a corpus split's clips.

    python benchmarks/benchmark_vocoder.py --dataset /work/rc/eval --dataset_config_name level1 --num_clips 60 \
        --vocoders griffin_lim [--vocoders griffin_lim path/to/vocos_folder] [--save_dir copies/]

Prints one JSON line per vocoder (WER in %, seconds of vocoding per second of audio) and the machine.
"""

import argparse
import json
import os
import platform
import time

import datasets
import numpy as np
import torch

from deepdubber_hf.audio import SAMPLING_RATE, load_audio, log_mel_spectrogram, save_audio
from deepdubber_hf.evaluation.asr import WhisperASR
from deepdubber_hf.evaluation.wer import word_error_rate
from deepdubber_hf.models.vocoder import load_vocoder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--dataset_config_name", default="level1")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num_clips", type=int, default=60)
    parser.add_argument("--vocoders", nargs="+", default=["griffin_lim"],
                        help="'griffin_lim', a VocosVocoder folder or an official Vocos folder.")
    parser.add_argument("--save_dir", default=None, help="Also write the copies as wav files, to listen to.")
    args = parser.parse_args(argv)

    rows = datasets.load_dataset(args.dataset, args.dataset_config_name, split=args.split)
    rows = rows.select(range(min(args.num_clips, len(rows))))
    asr = WhisperASR()
    waveforms = [load_audio(row["audio"]) for row in rows]
    references = list(rows["transcript"])
    audio_s = sum(len(w) for w in waveforms) / SAMPLING_RATE
    results = [{"vocoder": "ground truth", "wer": 100 * word_error_rate(
        references, [asr.transcribe(w.numpy(), SAMPLING_RATE) for w in waveforms])}]
    for name in args.vocoders:
        vocoder = load_vocoder(name).eval()
        hypotheses, seconds = [], 0.0
        for index, waveform in enumerate(waveforms):
            mel = log_mel_spectrogram(waveform)  # (c, n)
            start = time.perf_counter()
            with torch.no_grad():
                copy = vocoder(mel[None])[0]
            seconds += time.perf_counter() - start
            hypotheses.append(asr.transcribe(copy.numpy().astype(np.float32), SAMPLING_RATE))
            if args.save_dir:
                os.makedirs(args.save_dir, exist_ok=True)
                save_audio(os.path.join(args.save_dir, f"{index:03d}_{os.path.basename(name.rstrip('/'))}.wav"), copy)
        results.append({"vocoder": name, "wer": 100 * word_error_rate(references, hypotheses),
                        "real_time_factor": seconds / audio_s})
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    for result in results:
        print(json.dumps({**result, "clips": len(waveforms), "audio_s": round(audio_s, 1), "machine": machine}))


if __name__ == "__main__":
    main()
