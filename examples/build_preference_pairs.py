"""Build the preference pairs of stage 1.2 (§3.2.2): sample the SFT reasoner several times per clip and pair a
well-formed, correct response (chosen) with a wrong or ill-formed one (rejected).

Each response is scored by the rule-based rewards of the paper: the format reward (the four tagged sections in
order, Steps 1–4 in the reasoning) and the outcome reward (the conclusion matches the clip's ground truth on scene
type, gender, age and emotion by default, `--outcome_fields`). When no sample of a clip is both well-formed and
correct, the clip's reference annotation is the chosen response (or, with `--on_policy`, the clip gives no pair);
when every sample is, the clip gives no pair (nothing to prefer against). With `--mode qa` the model is asked the
direct question (Table 2's QA mode) and a response is well formed when it is a readable conclusion line.

```bash
python examples/build_preference_pairs.py --model runs/reasoner_sft --dataset corpus \
    --dataset_config_name level1 level2 --num_clips 300 --num_samples 4 --on_policy --output_dir runs/mpo_pairs
```

The output is a `datasets` dataset (`save_to_disk`) in trl's vision preference format — `images` (the sampled
frames), `prompt`, `chosen`, `rejected` (conversational) — plus the labels `MPOTrainer` reads
(`chosen_format`, `chosen_outcome`, `rejected_format`, `rejected_outcome`), and `clip_id`. `pairs_summary.json`
beside it counts what was sampled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

import datasets
import numpy as np
from datasets import Dataset, Features, Image, Sequence, Value, concatenate_datasets, load_dataset

from deepdubber_hf.reasoner.cot import DubbingConclusion, format_reward, outcome_reward
from deepdubber_hf.evaluation.reasoning import reference_conclusions
from deepdubber_hf.reasoner.generation import load_reasoner, reason
from deepdubber_hf.reasoner.processing_reasoner import build_messages, load_video_frames

FEATURES = Features(
    {
        "clip_id": Value("string"),
        "images": Sequence(Image()),
        "prompt": [{"role": Value("string"), "content": [{"type": Value("string"), "text": Value("string")}]}],
        "chosen": [{"role": Value("string"), "content": [{"type": Value("string"), "text": Value("string")}]}],
        "rejected": [{"role": Value("string"), "content": [{"type": Value("string"), "text": Value("string")}]}],
        "chosen_format": Value("float32"),
        "chosen_outcome": Value("float32"),
        "rejected_format": Value("float32"),
        "rejected_outcome": Value("float32"),
    }
)


def as_turns(messages: list) -> list:
    """Messages with every content item carrying a `text` key (None for images), as the Arrow schema wants."""
    return [
        {"role": m["role"], "content": [{"type": c["type"], "text": c.get("text")} for c in m["content"]]}
        for m in messages
    ]


def choose_pair(samples: list, reference: DubbingConclusion, reference_text: str, rng: np.random.Generator,
                fields: tuple, on_policy: bool = False, mode: str = "cot"):  # fmt: skip
    """(chosen, chosen labels, rejected, rejected labels) from scored samples, or None when there is no pair
    (nothing rejectable, or with `on_policy` no sample of the model's own to choose)."""
    scored = [(text, format_reward(text, mode), outcome_reward(text, reference, fields)) for text in samples]
    good = [s for s in scored if s[1] == 1.0 and s[2] == 1.0]
    bad = [s for s in scored if s[1] < 1.0 or s[2] < 1.0]
    if not bad or (on_policy and not good):
        return None
    chosen = good[rng.integers(len(good))] if good else (reference_text, 1.0, 1.0)
    rejected = bad[rng.integers(len(bad))]
    return chosen, rejected


def parse_args(input_args=None):
    parser = argparse.ArgumentParser(description="Sample the SFT reasoner and build MPO preference pairs.")
    parser.add_argument("--model", type=str, required=True, help="The SFT reasoner folder (model + processor).")
    parser.add_argument("--dataset", type=str, required=True)
    parser.add_argument("--dataset_config_name", type=str, nargs="*", default=None)
    parser.add_argument("--split", type=str, default="train")
    parser.add_argument("--num_clips", type=int, default=None, help="Clips drawn at random (default: all).")
    parser.add_argument("--num_samples", type=int, default=4, help="Sampled responses per clip.")
    parser.add_argument(
        "--mode", type=str, default="cot", choices=["cot", "qa"],
        help="Prompt the model was trained on: the CoT instruction or the direct question (train_sft.py --mode).",
    )
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max_new_tokens", type=int, default=320)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument(
        "--outcome_fields", type=str, nargs="+", default=["scene_type", "gender", "age", "emotion"],
        help="Conclusion fields that must match the ground truth for the outcome reward.",
    )  # fmt: skip
    parser.add_argument(
        "--on_policy", action="store_true",
        help="Only pair the model's own samples (skip clips where none is well-formed and correct) instead of "
        "falling back to the reference annotation as the chosen response.",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(input_args)


def main(args):
    if args.num_samples < 1:
        raise ValueError(f"--num_samples must be at least 1, got {args.num_samples}.")
    datasets.utils.logging.set_verbosity_warning()
    model, processor = load_reasoner(args.model)
    parts = [load_dataset(args.dataset, name, split=args.split) for name in args.dataset_config_name or [None]]
    dataset = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    rng = np.random.default_rng(args.seed)
    if args.num_clips is not None and args.num_clips < len(dataset):
        dataset = dataset.select(sorted(rng.choice(len(dataset), args.num_clips, replace=False).tolist()))
    references = reference_conclusions(dataset)
    num_frames = processor.num_frames

    # Decoded once: the same frames are sampled from and stored with the pair.
    videos = dataset.select_columns(["video"])
    frames = [load_video_frames(videos[i]["video"], num_frames) for i in range(len(dataset))]
    samples = reason(
        model,
        processor,
        frames,
        mode=args.mode,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        do_sample=True,
        temperature=args.temperature,
        num_return_sequences=args.num_samples,
        generator_seed=args.seed,
        show_progress=True,
    )

    references_text = dataset["cot" if args.mode == "cot" else "answer"]
    clip_ids = dataset["clip_id"] if "clip_id" in dataset.column_names else [str(i) for i in range(len(dataset))]
    rows, counts = [], {"clips": len(dataset), "samples": 0, "well_formed": 0, "correct": 0, "pairs": 0}
    for i, texts in enumerate(samples):
        reference = references[i]
        counts["samples"] += len(texts)
        counts["well_formed"] += sum(format_reward(t, args.mode) for t in texts)
        counts["correct"] += sum(outcome_reward(t, reference, tuple(args.outcome_fields)) for t in texts)
        pair = choose_pair(texts, reference, references_text[i], rng, tuple(args.outcome_fields), args.on_policy,
                           args.mode)
        if pair is None:
            continue
        (chosen, chosen_format, chosen_outcome), (rejected, rejected_format, rejected_outcome) = pair
        rows.append(
            {
                "clip_id": clip_ids[i],
                "images": list(frames[i].permute(0, 2, 3, 1).numpy()),
                "prompt": as_turns(build_messages(num_frames, args.mode)),
                "chosen": [{"role": "assistant", "content": [{"type": "text", "text": chosen}]}],
                "rejected": [{"role": "assistant", "content": [{"type": "text", "text": rejected}]}],
                "chosen_format": chosen_format,
                "chosen_outcome": chosen_outcome,
                "rejected_format": rejected_format,
                "rejected_outcome": rejected_outcome,
            }
        )
    counts["pairs"] = len(rows)
    if not rows:
        raise ValueError(
            f"every one of the {counts['samples']} samples was well-formed and correct: no rejected response to "
            "pair. Raise --temperature or --num_samples, or sample more clips."
        )
    tmp_dir = args.output_dir.rstrip("/") + ".tmp"
    if os.path.isdir(tmp_dir):
        shutil.rmtree(tmp_dir)
    Dataset.from_list(rows, features=FEATURES).save_to_disk(tmp_dir)
    with open(os.path.join(tmp_dir, "pairs_summary.json"), "w") as handle:
        json.dump(counts, handle, indent=2)
    if os.path.isdir(args.output_dir):
        shutil.rmtree(args.output_dir)
    os.replace(tmp_dir, args.output_dir)
    print(json.dumps(counts))


if __name__ == "__main__":
    main(parse_args())
