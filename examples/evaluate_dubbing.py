"""How well a dubbing pipeline times speech to the mouths (the Table 7 analog on the procedural corpus).

For every test clip whose mouths move, the pipeline plans the dubbing of the clip's transcript (`plan_dub`: video
features, conclusion, duration predictor; no sampling needed, the placement is decided before it) and the planned
speech is compared with the mouth-motion ground truth: the first and last video frame in which a mouth is open
(the corpus's `mouth_openness`). Reported per condition, in seconds: mean absolute onset error, offset error and
duration error.

Conditions: `video` (the pipeline as it is), `no_video` (the same pipeline with `use_video=False`),
`no_duration_predictor` (F5-TTS's length rule, the speech starting with the clip). A pipeline trained with
`examples/train_controlnet.py --no_video` is the trained ablation: evaluate it with `--conditions video`.

```bash
python examples/evaluate_dubbing.py --model runs/dubber_tiny --dataset path/to/corpus \
    --dataset_config_name level1 --split test --conditions video no_video no_duration_predictor \
    --output_dir runs/dubber_tiny/timing
```

The conclusion is the clip's annotation by default (stage 2 measured alone); `--use_reasoner` lets the pipeline's
reasoner conclude instead.

The corpus cuts every clip about 0.36 s before its first word and 0.3 s after its last, so on the clips as they are
even a model blind to the video places the speech well from the clip's length alone. `--pad_video_s S` measures
what a film needs: each clip gets 0-S seconds of still frames (its first and last frame, held) before and after
(ffmpeg's `tpad`, the same random lengths for every condition and model), so the speech may start anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from deepdubber_hf import DeepDubberPipeline
from deepdubber_hf.evaluation.reasoning import reference_conclusions

CONDITIONS = {
    "video": {},
    "no_video": {"use_video": False},
    "no_duration_predictor": {"use_duration_predictor": False},
}


def mouth_motion_span(mouth_openness: list, fps: float) -> tuple[float, float] | None:
    """(first, last) second in which any mouth is open, or None when no mouth moves."""
    openness = np.asarray(mouth_openness, dtype=np.float32)
    if openness.size == 0:
        return None
    moving = np.flatnonzero(openness.max(axis=0) > 0)
    if moving.size == 0:
        return None
    return moving[0] / fps, (moving[-1] + 1) / fps


def timing_errors(planned: list[tuple[float, float]], truth: list[tuple[float, float]]) -> dict:
    """Mean absolute onset, offset and duration errors (seconds) of planned (onset, offset) spans."""
    planned, truth = np.asarray(planned, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    return {
        "onset_mae_s": float(np.abs(planned[:, 0] - truth[:, 0]).mean()),
        "offset_mae_s": float(np.abs(planned[:, 1] - truth[:, 1]).mean()),
        "duration_mae_s": float(np.abs((planned[:, 1] - planned[:, 0]) - (truth[:, 1] - truth[:, 0])).mean()),
        "num_clips": int(len(truth)),
    }


def pad_video(source: str, before_s: float, after_s: float, output: str) -> None:
    """`source` with its first frame held `before_s` seconds and its last `after_s` seconds (ffmpeg `tpad`)."""
    command = ["ffmpeg", "-v", "error", "-y", "-i", source, "-vf",
               f"tpad=start_mode=clone:start_duration={before_s:.2f}:stop_mode=clone:stop_duration={after_s:.2f}",
               "-an", "-c:v", "libx264", "-crf", "18", output]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)


def to_markdown(model: str, results: dict, pad_video_s: float = 0.0) -> str:
    padding = f", clips padded with 0-{pad_video_s:g} s of still frames at each end" if pad_video_s else ""
    lines = [f"Speech timing against mouth motion: `{model}`{padding}", "",
             "| condition | onset MAE (s) | offset MAE (s) | duration MAE (s) | clips |",
             "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, r in results.items():
        lines.append(f"| {name} | {r['onset_mae_s']:.3f} | {r['offset_mae_s']:.3f} | {r['duration_mae_s']:.3f} | "
                     f"{r['num_clips']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def parse_args(input_args=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A DeepDubberPipeline folder (examples/train_controlnet.py).")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--dataset_config_name", nargs="*", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--num_clips", type=int, default=None, help="The first N clips with moving mouths.")
    parser.add_argument("--conditions", nargs="+", default=["video", "no_video"], choices=sorted(CONDITIONS))
    parser.add_argument("--use_reasoner", action="store_true", help="Conclude with the pipeline's reasoner.")
    parser.add_argument("--pad_video_s", type=float, default=0.0,
                        help="Hold each clip's first / last frame for 0 to this many seconds (see above).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the padding lengths.")
    parser.add_argument("--output_dir", required=True)
    return parser.parse_args(input_args)


def main(args) -> dict:
    if not os.path.isfile(os.path.join(args.model, "model_index.json")):
        raise FileNotFoundError(f"--model {args.model!r} is not a pipeline folder (no model_index.json).")
    pipe = DeepDubberPipeline.from_pretrained(args.model)
    parts = [datasets.load_dataset(args.dataset, name, split=args.split) for name in args.dataset_config_name or [None]]
    dataset = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    conclusions = reference_conclusions(dataset)
    rows = dataset.select_columns(["video", "transcript", "mouth_openness", "fps"]).cast_column(
        "video", datasets.Video(decode=False)
    )
    chosen = []
    for index, row in enumerate(rows.select_columns(["mouth_openness", "fps"])):
        span = mouth_motion_span(row["mouth_openness"], row["fps"])
        if span is not None:
            chosen.append((index, span))
        if args.num_clips is not None and len(chosen) == args.num_clips:
            break
    if not chosen:
        raise ValueError(f"no clip of --dataset {args.dataset!r} ({args.split}) has moving mouths to time against.")
    planned = {name: [] for name in args.conditions}
    truth = []
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="deepdubber-timing-") as work:
        for index, (start, end) in tqdm(chosen, desc="Timing", unit="clip"):
            row = rows[index]
            video = os.path.join(work, "clip.mp4")
            with open(video, "wb") as handle:
                handle.write(row["video"]["bytes"])
            if args.pad_video_s > 0:
                before, after = np.random.default_rng([args.seed, index]).uniform(0, args.pad_video_s, size=2)
                before, after = round(before * row["fps"]) / row["fps"], round(after * row["fps"]) / row["fps"]
                pad_video(video, before, after, os.path.join(work, "padded.mp4"))
                video, start, end = os.path.join(work, "padded.mp4"), start + before, end + before
            truth.append((start, end))
            for name in args.conditions:
                plan = pipe.plan_dub(video, row["transcript"],
                                     conclusion=None if args.use_reasoner else conclusions[index],
                                     **CONDITIONS[name])  # fmt: skip
                onset, duration = plan.onsets_s[0], plan.durations_s[0]
                planned[name].append((onset, onset + duration))
    results = {name: timing_errors(spans, truth) for name, spans in planned.items()}
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "timing.json"), "w") as handle:
        json.dump({"model": args.model, "dataset": args.dataset, "split": args.split,
                   "pad_video_s": args.pad_video_s, "results": results}, handle, indent=2)  # fmt: skip
    markdown = to_markdown(args.model, results, args.pad_video_s)
    with open(os.path.join(args.output_dir, "timing.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return results


if __name__ == "__main__":
    main(parse_args())
