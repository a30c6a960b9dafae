"""Single-speaker utterances cut from a procedural corpus, for stage 2.1 (speech-generation pre-training).

    .venv/bin/python dataset_scripts/build_tts_dataset.py CORPUS_DIR OUTPUT_DIR [--configs level1 level2]

A clip's audio can hold two voices (dialogue) and silence around the lines; `train_tts.py` wants one voice per
sample, since the kept part of an utterance is the voice prompt for the rest. Every turn of every clip is cut out
at its annotated start and end (plus `--pad_s` either side), and every clip's reference utterances (the target
speaker's and, in dialogue, the second speaker's) are added as they are. The result is a `save_to_disk` dataset
with columns `audio` (24 kHz), `text`, `speaker` (the voice's settings, so utterances of one voice share it),
`duration` and `source`, written to a temporary folder and renamed into place when complete.
"""

import argparse
import hashlib
import json
import os
import shutil

import datasets
import numpy as np
from tqdm.auto import tqdm

from deepdubber_hf.audio import SAMPLING_RATE, load_audio


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus_dir", help="A folder written by `deepdubber generate-data`.")
    parser.add_argument("output_dir", help="Where the `save_to_disk` dataset goes (must not exist yet).")
    parser.add_argument("--configs", nargs="+", default=None, help="Levels to read (default: every level present).")
    parser.add_argument("--split", default="train")
    parser.add_argument("--pad_s", type=float, default=0.1, help="Audio kept before and after each turn.")
    parser.add_argument("--no_references", action="store_true", help="Leave out the reference utterances.")
    return parser.parse_args(argv)


def voice_key(voice: str | None, fallback: str) -> str:
    """A short stable id of a voice's settings (the corpus stores them as JSON per character)."""
    return hashlib.sha1((voice or fallback).encode()).hexdigest()[:12]


def mono(audio) -> np.ndarray:
    return load_audio(audio).numpy().astype(np.float32) if audio is not None else None


def utterances(row: dict, pad_s: float, references: bool):
    """(audio, text, speaker, source) of each single-voice utterance of one corpus row."""
    voices = [voice_key(c.get("voice"), f"{row['clip_id']}-{i}") for i, c in enumerate(row["characters"])]
    waveform = mono(row["audio"])
    for index, turn in enumerate(row["turns"]):
        start = max(0, int((turn["start_s"] - pad_s) * SAMPLING_RATE))
        end = min(len(waveform), int((turn["end_s"] + pad_s) * SAMPLING_RATE))
        speaker = voices[turn["speaker"]] if turn["speaker"] < len(voices) else f"{row['clip_id']}-{turn['speaker']}"
        yield waveform[start:end], turn["text"], speaker, f"{row['clip_id']}/turn{index}"
    if not references:
        return
    target = row["target_speaker"]
    yield mono(row["reference_audio"]), row["reference_text"], voices[target], f"{row['clip_id']}/reference"
    if row.get("second_speaker_reference_audio") is not None:
        other = next((voices[i] for i, c in enumerate(row["characters"]) if i != target and c.get("voice")), None)
        yield (mono(row["second_speaker_reference_audio"]), row["second_speaker_reference_text"],
               other or f"{row['clip_id']}-second", f"{row['clip_id']}/second_reference")


def build(args) -> datasets.Dataset:
    data_dir = os.path.join(args.corpus_dir, "data")
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"{args.corpus_dir!r} has no data/ folder: pass a folder written by "
                                "`deepdubber generate-data`.")
    configs = args.configs or sorted(name for name in os.listdir(data_dir) if name.startswith("level"))
    rows = {"audio": [], "text": [], "speaker": [], "duration": [], "source": []}
    for config in configs:
        corpus = datasets.load_dataset(args.corpus_dir, config, split=args.split)
        for row in tqdm(corpus, desc=f"Cutting utterances from {config}/{args.split}"):
            for waveform, text, speaker, source in utterances(row, args.pad_s, not args.no_references):
                if waveform is None or len(waveform) == 0 or not text.strip():
                    continue
                rows["audio"].append({"array": waveform, "sampling_rate": SAMPLING_RATE})
                rows["text"].append(text)
                rows["speaker"].append(speaker)
                rows["duration"].append(len(waveform) / SAMPLING_RATE)
                rows["source"].append(f"{config}/{source}")
    string = datasets.Value("string")
    features = datasets.Features({"audio": datasets.Audio(sampling_rate=SAMPLING_RATE), "text": string,
                                  "speaker": string, "duration": datasets.Value("float32"), "source": string})
    return datasets.Dataset.from_dict(rows, features=features)


def main(args):
    if os.path.exists(args.output_dir):
        raise FileExistsError(f"{args.output_dir!r} exists already: pass a new --output_dir or delete it first.")
    dataset = build(args)
    tmp = args.output_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(tmp)
    os.replace(tmp, args.output_dir)
    hours = sum(dataset["duration"]) / 3600
    print(json.dumps({"utterances": len(dataset), "hours": round(hours, 3),
                      "speakers": len(set(dataset["speaker"])), "output_dir": args.output_dir}))


if __name__ == "__main__":
    main(parse_args())
