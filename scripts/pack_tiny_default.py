"""Pack the embedded default (`make tiny-checkpoints`, last stage): the stage-2.2 pipeline with the stage-1 reasoner
inside it, and a sample clip from the held-out corpus to try it on.

    python scripts/pack_tiny_default.py --pipeline runs/tiny-default/dubber --reasoner runs/tiny-default/mpo \
        --reasoner_mode cot --sample_corpus runs/tiny-default/heldout --output_dir checkpoints/deepdubber-tiny

The folder is written beside the output and renamed into place when complete, so an earlier default survives a
failed run. It is refused when larger than `--max_size_mb` (the repository ships it).
"""

import argparse
import json
import os
import shutil

import datasets

from deepdubber_hf import DeepDubberPipeline
from deepdubber_hf.data.schema import SCENE_TYPES
from deepdubber_hf.reasoner.generation import load_reasoner

SAMPLE_FOLDER = "sample"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="The output folder of examples/train_controlnet.py.")
    parser.add_argument("--reasoner", required=True, help="The output folder of train_sft.py or train_mpo.py.")
    parser.add_argument("--reasoner_mode", default="cot", choices=["cot", "qa"])
    parser.add_argument("--sample_corpus", default=None, help="A corpus folder whose level-1 test split gives the "
                        "sample clip (its first monologue).")  # fmt: skip
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_size_mb", type=float, default=60.0)
    return parser.parse_args(argv)


def folder_size_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names) / 2**20


def write_sample(corpus: str, folder: str) -> dict:
    """The first level-1 test clip of `corpus` where one visible character speaks: the silent video as it is,
    the line it was made for, and what the reasoner should conclude."""
    rows = datasets.load_dataset(corpus, "level1", split="test").cast_column("video", datasets.Video(decode=False))
    rows = rows.select_columns(["clip_id", "video", "transcript", "scene_type", "answer"])
    monologue = SCENE_TYPES.index("monologue")
    row = next((r for r in rows if r["scene_type"] == monologue), None) or rows[0]
    os.makedirs(folder, exist_ok=True)
    video = row["video"]
    if video.get("bytes"):
        with open(os.path.join(folder, "clip.mp4"), "wb") as handle:
            handle.write(video["bytes"])
    else:
        shutil.copyfile(video["path"], os.path.join(folder, "clip.mp4"))
    with open(os.path.join(folder, "line.txt"), "w", encoding="utf-8") as handle:
        handle.write(row["transcript"] + "\n")
    sample = {"clip_id": row["clip_id"], "corpus": os.path.abspath(corpus), "line": row["transcript"],
              "annotation": row["answer"]}
    with open(os.path.join(folder, "sample.json"), "w", encoding="utf-8") as handle:
        json.dump(sample, handle, indent=1)
    return sample


def main(args):
    pipeline = DeepDubberPipeline.from_pretrained(args.pipeline)
    if pipeline.controlnet is None or pipeline.video_encoder is None:
        raise ValueError(f"--pipeline {args.pipeline!r} has no ControlNet / video encoder: pass the output of "
                         "examples/train_controlnet.py.")
    reasoner, processor = load_reasoner(args.reasoner)
    components = {name: value for name, value in pipeline.components.items()
                  if name not in ("reasoner", "reasoner_processor")}
    packed = DeepDubberPipeline(**components, reasoner=reasoner, reasoner_processor=processor,
                                reasoner_mode=args.reasoner_mode)
    tmp = args.output_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    packed.save_pretrained(tmp)
    sample = write_sample(args.sample_corpus, os.path.join(tmp, SAMPLE_FOLDER)) if args.sample_corpus else None
    size = folder_size_mb(tmp)
    if size > args.max_size_mb:
        raise ValueError(f"the packed default is {size:.1f} MB, over --max_size_mb {args.max_size_mb}: train smaller "
                         f"components (it is left in {tmp} to inspect).")
    if os.path.isdir(args.output_dir):
        old = args.output_dir.rstrip("/") + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(args.output_dir, old)
        os.replace(tmp, args.output_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp, args.output_dir)
    print(json.dumps({"output_dir": args.output_dir, "size_mb": round(size, 2), "sample": sample}))


if __name__ == "__main__":
    main(parse_args())
