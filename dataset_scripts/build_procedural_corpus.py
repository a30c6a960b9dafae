"""Build the whole procedural CoT movie-dubbing corpus in one command: both levels, then the ground-truth WER.

    .venv/bin/python dataset_scripts/build_procedural_corpus.py corpus --level1-clips 200 --level2-clips 100 \
        --seed 0 --workers 2

The output folder is a Hub dataset repository (`load_dataset(folder, "level1", split="test")`); rerunning the
command resumes an interrupted build. `--skip-wer` leaves out the Whisper-base transcription of the test splits.
"""

import argparse
import time

from deepdubber_hf.data.corpus import generate_corpus


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir")
    parser.add_argument("--level1-clips", type=int, default=200)
    parser.add_argument("--level2-clips", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-wer", action="store_true")
    return parser.parse_args(argv)


def main(args):
    start = time.perf_counter()
    for level, count in ((1, args.level1_clips), (2, args.level2_clips)):
        if count:
            generate_corpus(args.output_dir, level=level, num_clips=count, seed=args.seed, workers=args.workers)
    print(f"generated in {time.perf_counter() - start:.1f} s")
    if not args.skip_wer:
        from measure_ground_truth_wer import main as measure, parse_args as measure_args

        measure(measure_args([args.output_dir]))
    print(f"done in {time.perf_counter() - start:.1f} s: datasets.load_dataset({args.output_dir!r}, 'level1')")


if __name__ == "__main__":
    main(parse_args())
