"""The README's main command (`make dub`: `deepdubber dub` on the embedded default's sample clip), part by part.

    .venv/bin/python benchmarks/benchmark_dub.py --repeats 3

Two measurements, each repeated `--repeats` times (the median is reported):

1. the command as a user runs it, in a fresh process: start-up, imports, loading, dubbing, muxing (wall time);
2. the same dubbing in this process, split into its parts by timing the pipeline's own methods as they run:
   loading (`from_pretrained`), reasoning (`conclude`: the reasoner's CoT over the clip), video (`encode_video`:
   decoding the frames and encoding them), generation (`generate_mels`: the flow-matching sampling with the
   ControlNet), vocoding (`vocode`), muxing (`save_video`: ffmpeg), and the rest (planning: reference, conclusion
   encoding, duration prediction, track assembly).

The real-time factor is a part's seconds over the clip's seconds (below 1: faster than the clip plays).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from benchmark_sampling import cpu_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(REPO, "checkpoints", "deepdubber-tiny")
PARTS = ("reasoning", "video", "generation", "vocoding")  # the pipeline's methods, timed as they run
METHODS = {"reasoning": "conclude", "video": "encode_video", "generation": "generate_mels", "vocoding": "vocode"}


def command_time(model: str, clip: str, line: str, output: str, steps: int, seed: int) -> float:
    """Wall time of `deepdubber dub` in a fresh process, as the README runs it."""
    command = [sys.executable, "-m", "deepdubber_hf.cli", "dub", clip, "--text", line, "--model", model, "-o", output,
               "--steps", str(steps), "--seed", str(seed)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return elapsed


def timed(method, name: str, record: dict):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            record[name] = record.get(name, 0.0) + time.perf_counter() - started

    return wrapper


def parts_time(model: str, clip: str, line: str, output: str, steps: int, seed: int) -> dict:
    """Seconds per part of one dubbing in this process (the model loaded afresh)."""
    from deepdubber_hf import DeepDubberPipeline

    record = {}
    started = time.perf_counter()
    pipe = DeepDubberPipeline.from_pretrained(model)
    record["loading"] = time.perf_counter() - started
    for part in PARTS:
        setattr(pipe, METHODS[part], timed(getattr(pipe, METHODS[part]), part, record))
    started = time.perf_counter()
    out = pipe(line, video=clip, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed))
    dubbing = time.perf_counter() - started
    started = time.perf_counter()
    out.save_video(output)
    record["muxing"] = time.perf_counter() - started
    record["rest"] = dubbing - sum(record[part] for part in PARTS)
    record["clip_s"] = len(out.audios[0]) / out.sampling_rate
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="A pipeline folder (default: the embedded default).")
    parser.add_argument("--clip", default=None, help="A video (default: the model's sample/clip.mp4).")
    parser.add_argument("--line", default=None, help="The line (default: the model's sample/line.txt).")
    parser.add_argument("--steps", type=int, default=32, help="Sampling steps (the command's default).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    clip = args.clip or os.path.join(args.model, "sample", "clip.mp4")
    line = args.line
    if line is None:
        with open(os.path.join(args.model, "sample", "line.txt"), encoding="utf-8") as handle:
            line = handle.read().strip()
    for path, what in ((args.model, "--model"), (clip, "--clip")):
        if not os.path.exists(path):
            sys.exit(f"{what} {path!r} not found: build the embedded default (make tiny-checkpoints) or pass {what}.")
    with tempfile.TemporaryDirectory(prefix="bench-dub-") as work:
        output = os.path.join(work, "dubbed.mp4")
        commands = [command_time(args.model, clip, line, output, args.steps, args.seed) for _ in range(args.repeats)]
        runs = [parts_time(args.model, clip, line, output, args.steps, args.seed) for _ in range(args.repeats)]
    clip_s = runs[0]["clip_s"]
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model {os.path.relpath(args.model, REPO)}; clip {clip_s:.2f} s; "
          f"{args.steps} steps; median of {args.repeats}")  # fmt: skip
    print(f"command: python benchmarks/benchmark_dub.py --steps {args.steps} --repeats {args.repeats}")
    print()
    print("| part | seconds | real-time factor |")
    print("| --- | ---: | ---: |")
    command = statistics.median(commands)
    print(f"| `deepdubber dub`, whole command in a fresh process | {command:.2f} | {command / clip_s:.2f} |")
    total = 0.0
    for key in ("loading", *PARTS, "muxing", "rest"):
        total += median[key]
        print(f"| {key} | {median[key]:.2f} | {median[key] / clip_s:.3f} |")
    print(f"| sum of the parts (in process) | {total:.2f} | {total / clip_s:.2f} |")


if __name__ == "__main__":
    main()
