"""The `deepdubber` command.

    deepdubber speak "Where did you put the map?" -o speech.wav
    deepdubber speak "Where did you put the map?" --reference-audio voice.wav --reference-text "..." -o speech.wav
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

logger = logging.getLogger("deepdubber")

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "checkpoints" / "deepdubber-tiny"


def _tiny_untrained_pipeline(text: str):
    """A tiny randomly initialised pipeline, for trying the command before any checkpoint exists."""
    import tempfile

    import torch

    from . import DeepDubberPipeline, DeepDubberTokenizer, DiTTransformerModel, FlowMatchSwayScheduler, VocosVocoder

    torch.manual_seed(0)
    characters = sorted(set(text) | set(" abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'-"))
    tokenizer = DeepDubberTokenizer.from_texts(["".join(characters)], tempfile.mkdtemp(prefix="deepdubber-vocab-"))
    transformer = DiTTransformerModel(
        num_layers=2, num_attention_heads=2, attention_head_dim=32, vocab_size=tokenizer.vocab_size,
        text_embed_dim=32, num_text_conv_layers=1,
    )
    vocoder = VocosVocoder(hidden_size=64, intermediate_size=128, num_layers=2)
    return DeepDubberPipeline(transformer, FlowMatchSwayScheduler(), vocoder, tokenizer)


def load_pipeline(model: str | None, text: str):
    from . import DeepDubberPipeline

    path = model or (str(DEFAULT_MODEL) if DEFAULT_MODEL.is_dir() else None)
    if path is None:
        logger.warning(
            "no --model given and no checkpoints/deepdubber-tiny yet: using a tiny UNTRAINED pipeline, "
            "so the output is noise. Train one with examples/train_tts.py or convert F5-TTS weights with "
            "scripts/convert_f5tts_checkpoint.py and pass --model DIR."
        )
        return _tiny_untrained_pipeline(text)
    if not os.path.isdir(path) and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise SystemExit(f"--model {path!r} is not a local folder and HF_HUB_OFFLINE=1 forbids downloading it.")
    return DeepDubberPipeline.from_pretrained(path)


def cmd_speak(args) -> int:
    import torch

    start = time.perf_counter()
    pipe = load_pipeline(args.model, args.text)
    loaded = time.perf_counter()
    out = pipe(
        args.text,
        reference_audio=args.reference_audio,
        reference_text=args.reference_text,
        duration_in_s=args.duration,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        generator=torch.Generator().manual_seed(args.seed),
    )
    out.save_audio(args.output)
    done = time.perf_counter()
    print(
        f"wrote {args.output}: {out.duration_in_s[0]:.2f} s of speech at {out.sampling_rate} Hz "
        f"(loading {loaded - start:.1f} s, generation {done - loaded:.1f} s)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepdubber", description="DeepDubber-HF: movie dubbing toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)
    speak = sub.add_parser("speak", help="Speak a line (optionally in the voice of a reference recording).")
    speak.add_argument("text", help="The line to speak.")
    speak.add_argument("-o", "--output", default="speech.wav", help="Output wav file.")
    speak.add_argument("--model", default=None, help="Pipeline folder or Hub id (default: checkpoints/deepdubber-tiny).")
    speak.add_argument("--reference-audio", default=None, help="A recording of the voice to clone.")
    speak.add_argument("--reference-text", default=None, help="The transcript of --reference-audio.")
    speak.add_argument("--duration", type=float, default=None, help="Length of the speech in seconds.")
    speak.add_argument("--steps", type=int, default=32, help="Sampling steps.")
    speak.add_argument("--guidance-scale", type=float, default=2.0)
    speak.add_argument("--seed", type=int, default=0)
    speak.set_defaults(func=cmd_speak)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"deepdubber {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
