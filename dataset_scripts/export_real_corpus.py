"""Build a real dubbing corpus from its published on-disk layout and write it in the Hub layout (parquet shards with
the audio and video embedded, plus a README.md whose YAML `configs` lists the shards of each split).

    python dataset_scripts/export_real_corpus.py grid --data_dir /data/GRID --output_dir /data/hub/dubbing

The layout each corpus is read from is in the docstring of its builder (`dataset_scripts/builders/`). Several
corpora can be exported into one output folder: each becomes a config of it. Then, offline:

    datasets.load_dataset("/data/hub/dubbing", "grid", split="test")
"""

from __future__ import annotations

import argparse
import logging
import sys

from builders import CoTMovieDubbing, Emilia, GridDubbing, V2CAnimation
from builders.common import card_text, export_hub_layout

logger = logging.getLogger(__name__)

BUILDERS = {"v2c": V2CAnimation, "grid": GridDubbing, "emilia": Emilia, "cot": CoTMovieDubbing}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("corpus", choices=sorted(BUILDERS), help="which corpus data_dir holds.")
    parser.add_argument("--data_dir", required=True, help="the corpus in its published layout (see its builder).")
    parser.add_argument("--output_dir", required=True, help="where to write data/<config>/*.parquet and README.md.")
    parser.add_argument(
        "--config", default=None,
        help="builder config: v2c default|all, grid dubbing|all, emilia en, cot default (default: the first).",
    )  # fmt: skip
    parser.add_argument(
        "--hub_config", default=None,
        help="config name in the output card (default: the corpus name, plus the builder config if not the first).",
    )  # fmt: skip
    parser.add_argument(
        "--cache_dir", default=None, help="the builder's Arrow cache (default: the datasets cache, HF_DATASETS_CACHE)."
    )
    parser.add_argument(
        "--missing_files", choices=["error", "skip"], default="error",
        help="a listed clip without its media: stop (error) or leave it out (skip).",
    )  # fmt: skip
    parser.add_argument("--language", default=None, help="emilia only: the language folder to read (default EN).")
    parser.add_argument("--max_shard_size", default="500MB", help="size of a parquet shard, media included.")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> list:
    builder_class = BUILDERS[args.corpus]
    config = args.config or builder_class.DEFAULT_CONFIG_NAME
    if config not in builder_class.builder_configs:
        raise ValueError(
            f"--config {config!r} is not a config of the {args.corpus} builder: choose one of "
            f"{sorted(builder_class.builder_configs)}."
        )
    if args.language is not None and args.corpus != "emilia":
        raise ValueError("--language only applies to emilia.")
    # Only non-default settings are passed: each one gives the builder's cache another config id.
    kwargs = {"missing_files": args.missing_files} if args.missing_files != "error" else {}
    if args.language is not None:
        kwargs["language"] = args.language.upper()
    builder = builder_class(
        data_dir=args.data_dir,
        config_name=config,
        cache_dir=args.cache_dir,  # not inside output_dir, which is meant to be uploaded as it is
        **kwargs,
    )
    builder.download_and_prepare()
    hub_config = args.hub_config
    if hub_config is None:
        hub_config = args.corpus if config == builder_class.DEFAULT_CONFIG_NAME else f"{args.corpus}-{config}"
        if args.language is not None and args.language.upper() != "EN":
            hub_config += f"-{args.language.lower()}"
    paths = export_hub_layout(
        builder.as_dataset(), args.output_dir, hub_config, card_text(builder), max_shard_size=args.max_shard_size
    )
    for name, split in builder.info.splits.items():
        logger.info(f"{hub_config}/{name}: {split.num_examples} clips")
    logger.info(f"wrote {len(paths)} shard(s) and README.md to {args.output_dir}")
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    main(parse_args())
