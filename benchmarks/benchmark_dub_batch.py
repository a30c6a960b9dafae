"""Clips per minute of `deepdubber dub-batch`: one process against two (`accelerate launch`), rows one by one against
several in one sampling call.

    .venv/bin/python benchmarks/benchmark_dub_batch.py --num_clips 12 --steps 32

Generates `--num_clips` level-1 clips of the procedural corpus (seeded), writes their manifest, then runs the
command as a user does, each time into a fresh output folder, and times the whole command (start-up and model
loading included). Without `--model` the pipeline is the tiny untrained one `deepdubber dub` falls back to: the
timing of a model of that size, not of a trained one's speech.
"""

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchmark_sampling import cpu_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(REPO, "configs", "accelerate", "cpu_2proc.yaml")


def make_clips(folder: str, num_clips: int) -> float:
    """`num_clips` generated clips and their manifest in `folder`; returns their total length in seconds."""
    from deepdubber_hf.data.corpus import generate_clip

    rows, total = [], 0.0
    for index in range(num_clips):
        clip = generate_clip(f"bench{index}", level=1, seed=1000 + index)
        name = f"clip{index:03d}.mp4"
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(clip["video"]["bytes"])
        rows.append({"id": f"clip{index:03d}", "video": name, "text": clip["transcript"]})
        total += clip["duration_s"]
    with open(os.path.join(folder, "manifest.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "video", "text"])
        writer.writeheader()
        writer.writerows(rows)
    return total


def run(input_dir: str, output_dir: str, processes: int, batch_size: int, steps: int, model: str | None) -> float:
    """Wall time of one `dub-batch` run (seconds); fails loudly if a row failed."""
    args = ["dub-batch", input_dir, output_dir, "--steps", str(steps), "--batch-size", str(batch_size)]
    args += ["--model", model] if model else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if processes == 1:
        command = [sys.executable, "-m", "deepdubber_hf.cli", *args]
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", CPU_CONFIG,
                   "--num_processes", str(processes), "--main_process_port", str(port), "-m", "deepdubber_hf.cli",
                   *args]  # fmt: skip
        # Each process gets its share of the cores.
        env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // processes)))
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    with open(os.path.join(output_dir, "results.jsonl")) as handle:
        statuses = [json.loads(line)["status"] for line in handle if line.strip()]
    if any(status != "ok" for status in statuses):
        raise RuntimeError(f"rows failed in {output_dir}: {statuses}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_clips", type=int, default=12)
    parser.add_argument("--steps", type=int, default=32, help="Sampling steps (the command's default).")
    parser.add_argument("--batch_size", type=int, default=4, help="Rows per sampling call in the batched runs.")
    parser.add_argument("--model", type=str, default=None, help="A pipeline folder (default: the tiny untrained one).")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-dub-batch-")
    try:
        clips = os.path.join(work, "clips")
        os.makedirs(clips)
        seconds = make_clips(clips, args.num_clips)
        print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {args.num_clips} clips, {seconds:.1f} s of video, "
              f"{args.steps} steps, model {args.model or 'tiny untrained'}")  # fmt: skip
        print("| processes | rows per sampling call | wall time (s) | clips per minute | real-time factor |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for processes, batch_size in ((1, 1), (1, args.batch_size), (2, 1), (2, args.batch_size)):
            out = os.path.join(work, f"out-{processes}-{batch_size}")
            elapsed = run(clips, out, processes, batch_size, args.steps, args.model)
            print(f"| {processes} | {batch_size} | {elapsed:.1f} | {60 * args.num_clips / elapsed:.1f} | "
                  f"{elapsed / seconds:.2f} |", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
