"""The `deepdubber` command.

    deepdubber speak "Where did you put the map?" -o speech.wav
    deepdubber speak "Where did you put the map?" --reference-audio voice.wav --reference-text "..." -o speech.wav
    deepdubber generate-data corpus/ --level 1 --num-clips 200 --seed 0 --workers 2
    deepdubber reason clip.mp4 --model runs/reasoner_sft [--json]
    deepdubber dub clip.mp4 --text "Where did you put the map?" -o dubbed.mp4
    deepdubber dub film.mp4 --subtitles lines.srt --reference-audio alice.wav bob.wav \
        --reference-text "..." "..." --model runs/dubber -o dubbed.mp4
    deepdubber dub-batch clips/ dubbed/ --model runs/dubber            # clips/manifest.csv (or .jsonl), or a dataset
    accelerate launch --num_processes 4 -m deepdubber_hf.cli dub-batch clips/ dubbed/ --model runs/dubber
    deepdubber demo [--model runs/dubber] [--host 127.0.0.1] [--port 7860]   # a web page for dubbing
    deepdubber listening-test build samples.csv nmos_test/ --kind nmos --seed 0
    deepdubber listening-test score nmos_test/key.json ratings-*.csv --json nmos.json
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


def _tiny_untrained_pipeline(text: str, dubbing: bool = False):
    """A tiny randomly initialised pipeline, for trying the command before any checkpoint exists (with the
    stage-2.2 parts when `dubbing`)."""
    import tempfile

    import torch

    from . import DeepDubberPipeline, DeepDubberTokenizer, DiTTransformerModel, FlowMatchSwayScheduler, VocosVocoder

    torch.manual_seed(0)
    characters = sorted(set(text) | set(" abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'-"))
    with tempfile.TemporaryDirectory(prefix="deepdubber-vocab-") as vocab_dir:
        tokenizer = DeepDubberTokenizer.from_texts(["".join(characters)], vocab_dir)
    transformer = DiTTransformerModel(
        num_layers=2, num_attention_heads=2, attention_head_dim=32, vocab_size=tokenizer.vocab_size,
        text_embed_dim=32, num_text_conv_layers=1,
    )
    vocoder = VocosVocoder(hidden_size=64, intermediate_size=128, num_layers=2)
    parts = {}
    if dubbing:
        from .pipelines.dubbing import dubbing_components

        parts = dubbing_components(transformer, controlnet_layers=1, duration_predictor_layers=1)
    return DeepDubberPipeline(transformer.eval(), FlowMatchSwayScheduler(), vocoder.eval(), tokenizer, **parts)


def load_pipeline(model: str | None, text: str, dubbing: bool = False):
    from . import DeepDubberPipeline

    path = model or (str(DEFAULT_MODEL) if DEFAULT_MODEL.is_dir() else None)
    if path is None:
        logger.warning(
            "no --model given and no checkpoints/deepdubber-tiny yet: using a tiny UNTRAINED pipeline, "
            "so the output is noise. Train one with examples/train_tts.py (and examples/train_controlnet.py for "
            "dubbing) or convert F5-TTS weights with scripts/convert_f5tts_checkpoint.py and pass --model DIR."
        )
        return _tiny_untrained_pipeline(text, dubbing=dubbing)
    local = os.path.isabs(path) or path.startswith((".", "~")) or os.path.exists(path) or path.count("/") != 1
    if not os.path.isdir(path) and (local or os.environ.get("HF_HUB_OFFLINE") == "1"):
        raise FileNotFoundError(
            f"model folder {path!r} not found: pass the output folder of examples/train_tts.py (speak) or "
            "examples/train_controlnet.py (dub) with --model DIR."
        )
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "model_index.json")):
        raise FileNotFoundError(
            f"{path!r} is not a pipeline folder (no model_index.json): pass the folder a training script saved "
            "the whole pipeline to."
        )
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


def cmd_dub(args) -> int:
    import torch

    from .pipelines.dubbing import check_video_output

    if not os.path.isfile(args.video):
        raise FileNotFoundError(f"video {args.video!r} not found; pass the path of a video file.")
    if (args.text is None) == (args.subtitles is None):
        raise ValueError("give the line to speak with --text, or timed lines with --subtitles (not both).")
    check_video_output(args.output)
    references = args.reference_audio
    reference_texts = args.reference_text
    if references is not None and len(references) == 1:
        references = references[0]
        reference_texts = reference_texts[0] if reference_texts and len(reference_texts) == 1 else reference_texts
    start = time.perf_counter()
    pipe = load_pipeline(args.model, args.text or "", dubbing=True)
    loaded = time.perf_counter()
    out = pipe(
        args.text, video=args.video, reference_audio=references, reference_text=reference_texts,
        conclusion=args.conclusion, subtitles=args.subtitles, duration_in_s=args.duration,
        num_inference_steps=args.steps, generator=torch.Generator().manual_seed(args.seed),
        use_video=not args.no_video, use_conclusion=not args.no_conclusion,
        use_duration_predictor=not args.no_duration_predictor,
    )  # fmt: skip
    out.save_video(args.output)
    done = time.perf_counter()
    if out.reasoning:
        print(out.reasoning)
    print(f"conclusion: {out.conclusion.to_text() if out.conclusion else 'none'}")
    for segment in out.segments:
        who = f"{segment['speaker']}: " if segment["speaker"] else ""
        print(f"  {segment['onset_s']:6.2f}-{segment['offset_s']:6.2f} s  {who}{segment['text']}")
    print(f"wrote {args.output} (loading {loaded - start:.1f} s, dubbing {done - loaded:.1f} s)")
    return 0


def cmd_dub_batch(args) -> int:
    from datetime import timedelta

    from accelerate import PartialState
    from accelerate.utils import InitProcessGroupKwargs, parse_flag_from_env

    from .batch import BatchOptions, load_rows, rows_text, run_batch

    options = BatchOptions(num_inference_steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                           use_video=not args.no_video, use_conclusion=not args.no_conclusion,
                           use_duration_predictor=not args.no_duration_predictor)  # fmt: skip
    # The processes meet at the start and at the end only; the one with the longest clips may keep the others
    # waiting for far longer than the default half hour. PartialState, unlike Accelerator, does not read
    # ACCELERATE_USE_CPU itself: without it, CPU processes started by `accelerate launch` would each run alone.
    timeout = InitProcessGroupKwargs(timeout=timedelta(days=7)).to_kwargs()
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), **timeout)
    if not state.is_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    start = time.perf_counter()
    rows = load_rows(args.input, dataset_config=args.dataset_config, split=args.split)
    pipe = load_pipeline(args.model, rows_text(rows), dubbing=True).to(state.device)
    pipe.set_progress_bar_config(disable=True)
    model = os.path.abspath(args.model) if args.model and os.path.isdir(args.model) else args.model
    summary = run_batch(pipe, rows, args.output_dir, options, model=model, state=state)
    if state.is_main_process:
        failed = f", {summary['error']} failed" if summary["error"] else ""
        earlier = f" ({summary['skipped']} by an earlier run)" if summary["skipped"] else ""
        print(f"dubbed {summary['ok']} of {len(rows)} clips{earlier}{failed} in {time.perf_counter() - start:.1f} s "
              f"on {state.num_processes} process(es): see {summary['results']}")  # fmt: skip
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


def cmd_listening_test(args) -> int:
    import json

    from .evaluation.subjective import build_listening_test, read_manifest, results_to_markdown, score_listening_test

    if args.action == "build":
        key = build_listening_test(read_manifest(args.manifest), args.output_dir, kind=args.kind, seed=args.seed,
                                   title=args.title)  # fmt: skip
        print(f"wrote a {args.kind.upper()} test of {len(key['items'])} items (test {key['test_id']}): send raters "
              f"{os.path.join(args.output_dir, 'index.html')} and media/; keep key.json private, it names the systems")
        return 0
    results = score_listening_test(args.ratings, args.key)
    print(results_to_markdown(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2, ensure_ascii=False)
        print(f"wrote {args.json}")
    return 0


def cmd_demo(args) -> int:
    from .demo import launch_demo

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} is not a TCP port: give a number from 1 to 65535 (0 picks a free one).")
    launch_demo(args.model, host=args.host, port=args.port or None)
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

    dub = sub.add_parser("dub", help="Dub a silent clip: speech timed to its mouths, muxed into the video.")
    dub.add_argument("video", help="The silent clip (mp4, mkv, webm, ...).")
    dub.add_argument("--text", default=None, help="The line to speak.")
    dub.add_argument("--subtitles", default=None, help="An .srt file: every cue dubbed in its time window.")
    dub.add_argument("-o", "--output", default="dubbed.mp4", help="Output video (.mp4, .mkv, .mov or .webm).")
    dub.add_argument("--model", default=None, help="Pipeline folder (default: checkpoints/deepdubber-tiny).")
    dub.add_argument("--reference-audio", nargs="+", default=None,
                     help="The voice to clone; with named speakers in --subtitles, one per speaker in the order "
                     "they first speak.")  # fmt: skip
    dub.add_argument("--reference-text", nargs="+", default=None, help="The transcript of each --reference-audio.")
    dub.add_argument("--conclusion", default=None,
                     help="Skip the reasoner: e.g. 'scene type: monologue; speakers: 1; gender: female; age: young; "
                     "emotion: happy'.")  # fmt: skip
    dub.add_argument("--duration", type=float, default=None, help="Length of the speech in seconds.")
    dub.add_argument("--steps", type=int, default=32, help="Sampling steps.")
    dub.add_argument("--seed", type=int, default=0)
    dub.add_argument("--no-video", action="store_true", help="Ablation: ignore the video features.")
    dub.add_argument("--no-conclusion", action="store_true", help="Ablation: no conclusion condition.")
    dub.add_argument("--no-duration-predictor", action="store_true", help="Ablation: F5-TTS's length rule.")
    dub.set_defaults(func=cmd_dub)

    batch = sub.add_parser(
        "dub-batch", help="Dub every clip of a manifest or dataset (resumable; several processes with accelerate)."
    )
    batch.add_argument("input", help="A folder with manifest.csv / manifest.jsonl (video, text or subtitles, "
                       "reference_audio, reference_text, speaker, conclusion, id), the manifest itself, or a "
                       "dataset in the corpus's schema.")  # fmt: skip
    batch.add_argument("output_dir", help="One dubbed clip per row, results.jsonl and results.csv (resumed if it "
                       "holds an earlier run).")  # fmt: skip
    batch.add_argument("--model", default=None, help="Pipeline folder (default: checkpoints/deepdubber-tiny).")
    batch.add_argument("--dataset-config", default=None, help="With a dataset: its configuration (e.g. level1).")
    batch.add_argument("--split", default="test", help="With a dataset: the split to dub.")
    batch.add_argument("--batch-size", type=int, default=4, help="Rows planned, and lines sampled, together.")
    batch.add_argument("--steps", type=int, default=32, help="Sampling steps.")
    batch.add_argument("--seed", type=int, default=0, help="With the row id and the line, the seed of each line.")
    batch.add_argument("--no-video", action="store_true", help="Ablation: ignore the video features.")
    batch.add_argument("--no-conclusion", action="store_true", help="Ablation: no conclusion condition.")
    batch.add_argument("--no-duration-predictor", action="store_true", help="Ablation: F5-TTS's length rule.")
    batch.set_defaults(func=cmd_dub_batch)

    demo = sub.add_parser("demo", help="Serve a web page for dubbing clips in the browser (needs the demo extra).")
    demo.add_argument("--model", default=None, help="Pipeline folder (default: checkpoints/deepdubber-tiny).")
    demo.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0: every interface).")
    demo.add_argument("--port", type=int, default=7860, help="Port to listen on (0: the first free one from 7860).")
    demo.set_defaults(func=cmd_demo)

    test = sub.add_parser("listening-test", help="Build and score NMOS / SMOS listening tests (a static web page).")
    test_sub = test.add_subparsers(dest="action", required=True)
    build = test_sub.add_parser("build", help="Write the page, the media under opaque names and the private key.")
    build.add_argument("manifest", help="A .csv or .jsonl with id, system, audio or video, [reference], [text].")
    build.add_argument("output_dir", help="The test folder (new or empty).")
    build.add_argument("--kind", choices=["nmos", "smos"], default="nmos", help="Naturalness or voice similarity.")
    build.add_argument("--seed", type=int, default=0, help="Seed of the presentation order.")
    build.add_argument("--title", default=None, help="Page heading (keep system names out of it).")
    build.set_defaults(func=cmd_listening_test)
    score = test_sub.add_parser("score", help="MOS ± 95 %% CI per system from the raters' exported CSV files.")
    score.add_argument("key", help="The key.json the build step wrote.")
    score.add_argument("ratings", nargs="+", help="The CSV files exported from the page.")
    score.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    score.set_defaults(func=cmd_listening_test)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"deepdubber {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
