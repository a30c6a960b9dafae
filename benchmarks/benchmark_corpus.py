"""Procedural corpus generation speed: clips per second with K worker processes (speech, frames, mp4, parquet).

    .venv/bin/python benchmarks/benchmark_corpus.py --num-clips 40 --workers 2
"""

import argparse
import os
import platform
import tempfile
import time

from deepdubber_hf.data.corpus import generate_corpus


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-clips", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--level", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print("| level | workers | clips | seconds | clips/s |")
    print("|---|---|---|---|---|")
    for level in args.level:
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                generate_corpus(folder, level=level, num_clips=args.num_clips, seed=0, workers=workers,
                                progress=False)
                elapsed = time.perf_counter() - start
            print(f"| {level} | {workers} | {args.num_clips} | {elapsed:.1f} | {args.num_clips / elapsed:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
