"""Does a SyncNet's LSE tell matched speech from mismatched speech? A check of the metric, not of a model.

For each test clip whose speaker is seen talking, LSE-C / LSE-D / the offset are computed twice: with the clip's own speech
and with the speech of another clip (the next one in the split). A SyncNet that learned lip sync gives the matched
pairs a higher LSE-C and a lower LSE-D, and finds offsets near 0 only for them. The lips are the speaker's mouth box
of the corpus (`--face_boxes dataset`) or the face OpenCV's Haar cascade finds (`haar`); clips where it finds none
are scored apart (the whole frame then stands in for the face).

```bash
python benchmarks/check_lse_discrimination.py --syncnet runs/syncnet --dataset path/to/corpus \
    --dataset_config_name level1 --split test --num_clips 60
```
"""

import argparse
import json
import os
import platform
import sys
import tempfile

import datasets
import numpy as np
import torch

from deepdubber_hf.audio import load_audio
from deepdubber_hf.evaluation.syncnet import load_syncnet, lse_scores, speaker_mouth_bbox


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--syncnet", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--dataset_config_name", default="level1")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num_clips", type=int, default=60)
    parser.add_argument("--face_boxes", default="dataset", choices=["dataset", "haar"],
                        help="The corpus's mouth box of the speaker, or OpenCV's Haar face track.")
    parser.add_argument("--output", default=None, help="Also write the results to this JSON file.")
    return parser.parse_args()


def summarise(rows: list) -> dict:
    if not rows:
        return {"clips": 0}
    out = {"clips": len(rows)}
    for key in ("lse_c", "lse_d"):
        out[key] = float(np.mean([r[key] for r in rows]))
    out["offset_within_1"] = float(np.mean([abs(r["offset"]) <= 1 for r in rows]))
    return out


def main(args):
    model = load_syncnet(args.syncnet)
    rows = datasets.load_dataset(args.dataset, args.dataset_config_name, split=args.split)
    rows = rows.cast_column("video", datasets.Video(decode=False))
    # Clips whose speaker's lips speak the line: narrations (over closed or unseen mouths) have none to sync.
    picked = [i for i, r in enumerate(rows.select_columns(["characters", "target_speaker"]))
              if speaker_mouth_bbox(r) is not None][: args.num_clips]  # fmt: skip
    results = {"matched": {True: [], False: []}, "mismatched": {True: [], False: []}}
    with torch.no_grad(), tempfile.TemporaryDirectory() as work:
        for n, index in enumerate(picked):
            row, other = rows[index], rows[picked[(n + 1) % len(picked)]]
            video = os.path.join(work, "clip.mp4")
            with open(video, "wb") as handle:
                handle.write(row["video"]["bytes"])
            for name, audio in (("matched", row["audio"]), ("mismatched", other["audio"])):
                waveform = load_audio(audio, 16000).numpy()
                mouth = speaker_mouth_bbox(row) if args.face_boxes == "dataset" else None
                scores = lse_scores(video, (waveform, 16000), model, mouth_bbox=mouth)
                scores["face_found"] = scores["face_found"] or mouth is not None
                results[name][scores["face_found"]].append(scores)
            print(f"{n + 1}/{len(picked)}", end="\r", file=sys.stderr)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "command": "python benchmarks/check_lse_discrimination.py " + " ".join(sys.argv[1:]),
        **{f"{name} ({'face found' if found else 'no face found'})": summarise(results[name][found])
           for name in results for found in (True, False)},  # fmt: skip
    }
    print(json.dumps(report, indent=2))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main(parse_args())
