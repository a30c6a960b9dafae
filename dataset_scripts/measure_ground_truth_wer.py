"""Word error rate of a generated corpus's ground-truth speech under the offline Whisper-base; stated in its card.

    .venv/bin/python dataset_scripts/measure_ground_truth_wer.py CORPUS_DIR [--configs level1 level2] [--split test]

Writes CORPUS_DIR/eval/ground_truth_wer.json and rewrites CORPUS_DIR/README.md with the table. This WER is the
floor a dubbing model trained on the corpus is compared with.
"""

import argparse
import json
import os
import shlex
import sys

import datasets
from tqdm.auto import tqdm

from deepdubber_hf.data.corpus import write_card
from deepdubber_hf.evaluation.asr import ASR_NAME, WhisperASR
from deepdubber_hf.evaluation.wer import word_error_rate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus_dir")
    parser.add_argument("--configs", nargs="+", default=None, help="Default: every level present.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--compute_type", default="float32")
    return parser.parse_args(argv)


def main(args):
    configs = args.configs or sorted(
        name for name in os.listdir(os.path.join(args.corpus_dir, "data")) if name.startswith("level")
    )
    asr = WhisperASR(compute_type=args.compute_type)
    results = []
    for config in configs:
        dataset = datasets.load_dataset(args.corpus_dir, config, split=args.split)
        references, hypotheses = [], []
        for row in tqdm(dataset, desc=f"{config}/{args.split}"):
            samples = row["audio"].get_all_samples()
            hypotheses.append(asr.transcribe(samples.data.mean(0).numpy(), samples.sample_rate))
            references.append(row["transcript"])
        results.append({"config": config, "split": args.split, "clips": len(references),
                        "wer": word_error_rate(references, hypotheses)})
        print(f"{config}/{args.split}: WER {100 * results[-1]['wer']:.2f} % over {len(references)} clips")
    report = {"asr": ASR_NAME, "compute_type": args.compute_type, "results": results,
              "command": "python dataset_scripts/measure_ground_truth_wer.py " + " ".join(map(shlex.quote, sys.argv[1:]))}
    os.makedirs(os.path.join(args.corpus_dir, "eval"), exist_ok=True)
    path = os.path.join(args.corpus_dir, "eval", "ground_truth_wer.json")
    with open(path + ".tmp", "w") as handle:
        json.dump(report, handle, indent=1)
    os.replace(path + ".tmp", path)
    write_card(args.corpus_dir)


if __name__ == "__main__":
    main(parse_args())
