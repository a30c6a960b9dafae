"""The `deepdubber` command.

    deepdubber speak "Where did you put the map?" -o speech.wav
    deepdubber speak "Where did you put the map?" --reference-audio voice.wav --reference-text "..." -o speech.wav
    deepdubber generate-data corpus/ --level 1 --num-clips 200 --seed 0 --workers 2
    deepdubber reason clip.mp4 --model runs/reasoner_sft [--json]
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


def cmd_generate_data(args) -> int:
    from .data.corpus import generate_corpus

    start = time.perf_counter()
    paths = generate_corpus(args.output_dir, level=args.level, num_clips=args.num_clips, seed=args.seed,
                            workers=args.workers, test_fraction=args.test_fraction)
    elapsed = time.perf_counter() - start
    print(f"level {args.level}: {args.num_clips} clips in {len(paths)} shards under {args.output_dir} "
          f"({elapsed:.1f} s); load with datasets.load_dataset({args.output_dir!r}, 'level{args.level}')")
    return 0


def load_reasoner(model: str | None):
    """The reasoner of `--model`, or of the embedded default's `reasoner/` folder."""
    from .reasoner.generation import load_reasoner as load

    path = model or str(DEFAULT_MODEL / "reasoner")
    if model is None and not os.path.isdir(path):
        raise FileNotFoundError(
            f"no --model given and no trained reasoner in {path}: train one with examples/train_sft.py "
            "and pass its output folder with --model DIR."
        )
    return load(path)


def cmd_reason(args) -> int:
    import json

    from .reasoner.generation import parse_response, reason

    if not os.path.isfile(args.video):
        raise FileNotFoundError(f"video {args.video!r} not found; pass the path of a video file.")
    model, processor = load_reasoner(args.model)
    text = reason(model, processor, [args.video], mode=args.mode, max_new_tokens=args.max_new_tokens)[0][0]
    parsed = parse_response(text, args.mode)
    if args.json:
        payload = {"video": args.video, "reasoning": text}
        payload.update({"conclusion": parsed.to_dict()} if parsed else {"failure": parsed.reason, "detail": parsed.detail})
        print(json.dumps(payload, indent=2))
    else:
        print(text)
        print()
        print(f"conclusion: {parsed.to_text()}" if parsed else f"no conclusion ({parsed.reason}: {parsed.detail})")
    return 0 if parsed else 1


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

    data = sub.add_parser("generate-data", help="Generate the procedural CoT movie-dubbing corpus (Hub layout).")
    data.add_argument("output_dir", help="Dataset folder (created; resumed if it holds the same corpus).")
    data.add_argument("--level", type=int, choices=[1, 2], required=True, help="1 = people, 2 = animals.")
    data.add_argument("--num-clips", type=int, required=True)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--workers", type=int, default=1, help="Processes generating clips.")
    data.add_argument("--test-fraction", type=float, default=0.2, help="Share of clips in the test split.")
    data.set_defaults(func=cmd_generate_data)

    think = sub.add_parser("reason", help="Reason step by step over a silent clip: scene type and speaker.")
    think.add_argument("video", help="The clip (mp4, mkv, webm, ...).")
    think.add_argument("--model", default=None, help="Reasoner folder (default: checkpoints/deepdubber-tiny/reasoner).")
    think.add_argument("--mode", choices=["cot", "qa"], default="cot", help="Reasoning (cot) or direct answer (qa).")
    think.add_argument("--max-new-tokens", type=int, default=320)
    think.add_argument("--json", action="store_true", help="Print the reasoning and conclusion as JSON.")
    think.set_defaults(func=cmd_reason)
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
