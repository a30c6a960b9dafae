"""Evaluate a reasoner on a test split: Tables 1–3 of the paper (scene-type accuracy, average recall, recall of
dialogue (A), monologue (B) and narration (C)), plus gender, age and emotion accuracy and the share of
well-formed responses.

```bash
python examples/evaluate_reasoning.py --model runs/reasoner_sft --dataset corpus \
    --dataset_config_name level1 level2 --split test --output_dir runs/reasoner_sft/eval
```

Writes, per config, `{config}_predictions.jsonl` (clip id, response, parsed conclusion, reference),
`{config}_confusion.png`, and for all configs together `metrics.json` and `metrics.md`.
"""

from __future__ import annotations

import argparse
import json
import os

import datasets
from datasets import load_dataset

from deepdubber_hf.evaluation.reasoning import (
    metrics_to_markdown,
    plot_confusion_matrix,
    reasoning_metrics,
    reference_conclusions,
)
from deepdubber_hf.reasoner.generation import load_reasoner, parse_response, reason


def write_atomically(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def evaluate_config(args, model, processor, config_name):
    dataset = load_dataset(args.dataset, config_name, split=args.split)
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    references = reference_conclusions(dataset)
    videos = dataset.select_columns(["video"])  # rows without the audio columns: nothing else is decoded
    videos = [videos[i]["video"] for i in range(len(dataset))]
    clip_ids = dataset["clip_id"] if "clip_id" in dataset.column_names else list(range(len(dataset)))
    texts = [
        r[0]
        for r in reason(
            model,
            processor,
            videos,
            mode=args.mode,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            show_progress=True,
        )
    ]
    predictions = [parse_response(text, args.mode) for text in texts]
    metrics = reasoning_metrics(predictions, references)
    name = config_name or "default"
    lines = [
        json.dumps(
            {
                "clip_id": clip_ids[i],
                "response": texts[i],
                "prediction": predictions[i].to_dict() if predictions[i] else None,
                "failure": None if predictions[i] else predictions[i].reason,
                "reference": references[i].to_dict(),
            }
        )
        for i in range(len(texts))
    ]
    write_atomically(os.path.join(args.output_dir, f"{name}_predictions.jsonl"), "\n".join(lines) + "\n")
    plot_confusion_matrix(metrics, os.path.join(args.output_dir, f"{name}_confusion.png"), title=f"{args.label} {name}")
    return name, metrics


def parse_args(input_args=None):
    parser = argparse.ArgumentParser(description="Scene-type and speaker-attribute accuracy of a reasoner.")
    parser.add_argument("--model", type=str, required=True, help="Folder of the reasoner (model + processor).")
    parser.add_argument("--dataset", type=str, required=True)
    parser.add_argument("--dataset_config_name", type=str, nargs="*", default=None)
    parser.add_argument("--split", type=str, default="test")
    parser.add_argument("--mode", type=str, default="cot", choices=("cot", "qa"))
    parser.add_argument("--label", type=str, default=None, help="Row name in the markdown table (default: --model).")
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=320)
    parser.add_argument("--max_samples", type=int, default=None)
    args = parser.parse_args(input_args)
    args.label = args.label or os.path.basename(os.path.normpath(args.model))
    return args


def main(args):
    datasets.utils.logging.set_verbosity_warning()
    os.makedirs(args.output_dir, exist_ok=True)
    model, processor = load_reasoner(args.model)
    results = {}
    for config_name in args.dataset_config_name or [None]:
        name, metrics = evaluate_config(args, model, processor, config_name)
        results[name] = metrics
    payload = {"model": args.model, "mode": args.mode, "split": args.split, "results": results}
    write_atomically(os.path.join(args.output_dir, "metrics.json"), json.dumps(payload, indent=2) + "\n")
    table = metrics_to_markdown({f"{args.label} ({name})": m for name, m in results.items()}, title=args.label)
    write_atomically(os.path.join(args.output_dir, "metrics.md"), table + "\n")
    print(table)


if __name__ == "__main__":
    main(parse_args())
