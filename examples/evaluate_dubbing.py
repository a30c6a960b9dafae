"""How well a dubbing pipeline times speech to the mouths (the Table 7 analog on the procedural corpus).

For every test clip whose mouths move, the pipeline plans the dubbing of the clip's transcript (`plan_dub`: video
features, conclusion, duration predictor; no sampling needed, the placement is decided before it) and the planned
speech is compared with the mouth-motion ground truth: the first and last video frame in which a mouth is open
(the corpus's `mouth_openness`). Reported per condition, in seconds: mean absolute onset error, offset error and
duration error.

Conditions: `video` (the pipeline as it is), `no_video` (the same pipeline with `use_video=False`),
`no_duration_predictor` (F5-TTS's length rule, the speech starting with the clip). A pipeline trained with
`examples/train_controlnet.py --no_video` is the trained ablation: evaluate it with `--conditions video`.

```bash
python examples/evaluate_dubbing.py --model runs/dubber_tiny --dataset path/to/corpus \
    --dataset_config_name level1 --split test --conditions video no_video no_duration_predictor \
    --output_dir runs/dubber_tiny/timing
```

The conclusion is the clip's annotation by default (stage 2 measured alone); `--use_reasoner` lets the pipeline's
reasoner conclude instead.

The corpus cuts every clip about 0.36 s before its first word and 0.3 s after its last, so on the clips as they are
even a model blind to the video places the speech well from the clip's length alone. `--pad_video_s S` measures
what a film needs: each clip gets 0-S seconds of still frames (its first and last frame, held) before and after
(ffmpeg's `tpad`, the same random lengths for every condition and model), so the speech may start anywhere.

## The paper's tables (`--setting`)

With `--setting`, the script dubs every test clip (or the first `--num_clips`) with the pipeline and scores the
speech with the whole offline suite (`deepdubber_hf.evaluation.suite`): WER (the offline Whisper-base by default,
`--asr transformers --asr_model DIR` for a local Whisper large-v3, `--asr pocketsphinx`), SPK-SIM (GE2E, or
`--speaker_backend wavlm --speaker_model DIR`), EMO-SIM (`--emotion_model DIR`; reported unavailable without one),
MCD-DTW and MCD-DTW-SL against the clip's real speech, LSE-C / LSE-D (`--syncnet DIR`, from
`examples/train_syncnet.py` or the converted official SyncNet; on the speaker's mouth where the dataset gives it, as
the procedural corpus does, else on the face OpenCV finds; clips whose speaker is known to be off screen are left out
of LSE), and, in the initial-reasoning setting, the reasoner's
scene-type accuracy and recalls. The setting chooses the reference voice (`deepdubber_hf.data.references`): 1.0 the
clip's own speech, 2.0 another utterance of the same speaker, 3.0 an unseen speaker's, initial-reasoning the same
speaker's when the reasoner's scene type is right and another speaker's when it is wrong (Table 1). The conclusion
that steers the speech is the clip's annotation (stage 2 measured alone), or the reasoner's with `--use_reasoner` and
in the initial-reasoning setting.

```bash
python examples/evaluate_dubbing.py --setting 2.0 --model runs/dubber --dataset path/to/corpus \
    --dataset_config_name level1 --split test --syncnet runs/syncnet --output_dir runs/dubber/dub2.0
# Table 7: the ablations as conditions, each a row
python examples/evaluate_dubbing.py --setting 2.0 --model runs/dubber --dataset path/to/corpus \
    --dataset_config_name level1 --conditions video no_video no_conclusion no_duration_predictor --output_dir ...
# the floor: the corpus's own speech scored as if it were a system (its WER is what Whisper-base makes of it)
python examples/evaluate_dubbing.py --setting 1.0 --model ground-truth --dataset path/to/corpus \
    --dataset_config_name level1 --split test --syncnet runs/syncnet --output_dir runs/ground_truth
```

It writes `results.json` (per clip and aggregated), `results.md` (the table of the setting: Table 4 for 1.0 / 2.0,
Table 6 for 3.0, Table 1 for initial-reasoning, Table 7 when several conditions are given), the generated speech
(`audio/<condition>/<clip>.wav`, ready for `deepdubber listening-test build`), mel-spectrogram comparisons like
Figure 5 (`mel_<clip>.png`) and, when the reasoner ran, a scene-type confusion matrix (`confusion_matrix.png`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from deepdubber_hf import DeepDubberPipeline
from deepdubber_hf.data.references import SETTINGS, ReferenceChoice
from deepdubber_hf.evaluation.reasoning import reference_conclusions
from deepdubber_hf.evaluation.suite import METRICS

CONDITIONS = {
    "video": {},
    "no_video": {"use_video": False},
    "no_conclusion": {"use_conclusion": False},
    "no_duration_predictor": {"use_duration_predictor": False},
}
# Table 7's row names for the conditions.
ABLATION_NAMES = {"video": "Proposed", "no_video": "w/o clip", "no_conclusion": "w/o conclusion",
                  "no_duration_predictor": "w/o duration predictor"}  # fmt: skip
GROUND_TRUTH = "ground-truth"
# --no_reference: the pipeline speaks in its own voice.
NO_REFERENCE = ReferenceChoice(audio=None, text=None, source_index=-1, kind="none")
# The SyncNet trained on the procedural corpus that ships with the repository (examples/train_syncnet.py).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SYNCNET = os.path.join(REPO, "checkpoints", "syncnet-tiny")


def mouth_motion_span(mouth_openness: list, fps: float) -> tuple[float, float] | None:
    """(first, last) second in which any mouth is open, or None when no mouth moves."""
    openness = np.asarray(mouth_openness, dtype=np.float32)
    if openness.size == 0:
        return None
    moving = np.flatnonzero(openness.max(axis=0) > 0)
    if moving.size == 0:
        return None
    return moving[0] / fps, (moving[-1] + 1) / fps


def timing_errors(planned: list[tuple[float, float]], truth: list[tuple[float, float]]) -> dict:
    """Mean absolute onset, offset and duration errors (seconds) of planned (onset, offset) spans."""
    planned, truth = np.asarray(planned, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    return {
        "onset_mae_s": float(np.abs(planned[:, 0] - truth[:, 0]).mean()),
        "offset_mae_s": float(np.abs(planned[:, 1] - truth[:, 1]).mean()),
        "duration_mae_s": float(np.abs((planned[:, 1] - planned[:, 0]) - (truth[:, 1] - truth[:, 0])).mean()),
        "num_clips": int(len(truth)),
    }


def pad_video(source: str, before_s: float, after_s: float, output: str) -> None:
    """`source` with its first frame held `before_s` seconds and its last `after_s` seconds (ffmpeg `tpad`)."""
    command = ["ffmpeg", "-v", "error", "-y", "-i", source, "-vf",
               f"tpad=start_mode=clone:start_duration={before_s:.2f}:stop_mode=clone:stop_duration={after_s:.2f}",
               "-an", "-c:v", "libx264", "-crf", "18", output]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)


def to_markdown(model: str, results: dict, pad_video_s: float = 0.0) -> str:
    padding = f", clips padded with 0-{pad_video_s:g} s of still frames at each end" if pad_video_s else ""
    lines = [f"Speech timing against mouth motion: `{model}`{padding}", "",
             "| condition | onset MAE (s) | offset MAE (s) | duration MAE (s) | clips |",
             "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, r in results.items():
        lines.append(f"| {name} | {r['onset_mae_s']:.3f} | {r['offset_mae_s']:.3f} | {r['duration_mae_s']:.3f} | "
                     f"{r['num_clips']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def parse_args(input_args=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help=f"A DeepDubberPipeline folder (examples/train_controlnet.py), or {GROUND_TRUTH!r} with "
                        "--setting to score the dataset's own speech.")  # fmt: skip
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--dataset_config_name", nargs="*", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--num_clips", type=int, default=None,
                        help="Timing: the first N clips with moving mouths. --setting: the first N clips.")
    parser.add_argument("--conditions", nargs="+", default=None, choices=sorted(CONDITIONS),
                        help="Timing default: video no_video. --setting default: video (several give Table 7).")
    parser.add_argument("--use_reasoner", action="store_true", help="Conclude with the pipeline's reasoner.")
    parser.add_argument("--pad_video_s", type=float, default=0.0,
                        help="Timing: hold each clip's first / last frame for 0 to this many seconds (see above).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the padding lengths, voices and sampling.")
    parser.add_argument("--output_dir", required=True)
    quality = parser.add_argument_group("the paper's tables (--setting)")
    quality.add_argument("--setting", default=None, choices=list(SETTINGS),
                         help="Dub and score with the whole metric suite in this reference-voice setting.")
    quality.add_argument("--metrics", nargs="+", default=list(METRICS), choices=list(METRICS))
    quality.add_argument("--asr", default="faster-whisper", choices=["faster-whisper", "transformers", "pocketsphinx"])
    quality.add_argument("--asr_model", default=None, help="The Whisper folder of --asr transformers.")
    quality.add_argument("--speaker_backend", default="ge2e", choices=["ge2e", "wavlm"])
    quality.add_argument("--speaker_model", default=None, help="A WavLMForXVector folder for --speaker_backend wavlm.")
    quality.add_argument("--emotion_model", default=None, help="A speech-emotion classifier folder (EMO-SIM).")
    quality.add_argument("--syncnet", default=DEFAULT_SYNCNET if os.path.isdir(DEFAULT_SYNCNET) else None,
                         help="A SyncNet folder (LSE-C / LSE-D); default: the repository's checkpoints/syncnet-tiny.")
    quality.add_argument("--no_reference", action="store_true",
                         help="Speak every line in the model's own voice (no reference audio), as `deepdubber dub` "
                         "does without --reference-audio; the setting still names the table.")  # fmt: skip
    quality.add_argument("--num_inference_steps", type=int, default=32)
    quality.add_argument("--num_plots", type=int, default=3, help="Mel-spectrogram comparisons (Figure 5) to draw.")
    args = parser.parse_args(input_args)
    if args.conditions is None:
        args.conditions = ["video"] if args.setting else ["video", "no_video"]
    if args.model == GROUND_TRUTH and not args.setting:
        parser.error(f"--model {GROUND_TRUTH} scores the dataset's speech: give a --setting.")
    if args.no_reference and (args.model == GROUND_TRUTH or not args.setting):
        parser.error("--no_reference applies to a pipeline's dubbing in a --setting, not to the ground truth.")
    return args


def load_rows(args):
    """The evaluated split (configs concatenated)."""
    parts = [datasets.load_dataset(args.dataset, name, split=args.split) for name in args.dataset_config_name or [None]]
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def load_pipeline(model: str) -> DeepDubberPipeline:
    if not os.path.isfile(os.path.join(model, "model_index.json")):
        raise FileNotFoundError(f"--model {model!r} is not a pipeline folder (no model_index.json).")
    return DeepDubberPipeline.from_pretrained(model)


def scene_type_name(dataset, value) -> str:
    return dataset.features["scene_type"].int2str(value) if isinstance(value, int) else value


def evaluate_quality(args) -> dict:
    """Dub the clips in `args.setting` and score them: the paper's tables (see the module docstring)."""
    from deepdubber_hf.audio import save_audio
    from deepdubber_hf.data.references import select_reference
    from deepdubber_hf.evaluation.reasoning import plot_confusion_matrix, reasoning_metrics
    from deepdubber_hf.evaluation.report import plot_mel_comparison, results_to_markdown
    from deepdubber_hf.evaluation.suite import DubbingScorer, aggregate_scores
    from deepdubber_hf.evaluation.syncnet import speaker_mouth_bbox
    from deepdubber_hf.reasoner.generation import parse_response, reason

    ground_truth = args.model == GROUND_TRUTH
    pipe = None if ground_truth else load_pipeline(args.model)
    needs_reasoner = args.setting == "initial-reasoning" or args.use_reasoner
    if needs_reasoner and (ground_truth or pipe.reasoner is None):
        raise ValueError(f"--setting {args.setting} {'--use_reasoner ' if args.use_reasoner else ''}needs a pipeline "
                         "with a reasoner: pass a --model saved with one (train_controlnet.py "
                         "--reasoner_name_or_path).")  # fmt: skip
    dataset = load_rows(args)
    if args.num_clips is not None:
        dataset = dataset.select(range(min(args.num_clips, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"--dataset {args.dataset!r} ({args.split}) has no clip to evaluate.")
    annotations = reference_conclusions(dataset)
    scorer = DubbingScorer(args.metrics, asr=args.asr, asr_model=args.asr_model, speaker_backend=args.speaker_backend,
                           speaker_model=args.speaker_model, emotion_model=args.emotion_model, syncnet=args.syncnet)
    systems = [GROUND_TRUTH] if ground_truth else list(args.conditions)
    rng = np.random.default_rng(args.seed)
    clip_scores = {name: [] for name in systems}
    per_clip, predictions, transcripts = [], [], []
    os.makedirs(args.output_dir, exist_ok=True)
    rows_encoded = dataset.cast_column("video", datasets.Video(decode=False))
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="deepdubber-eval-") as work:
        for index in tqdm(range(len(dataset)), desc=f"Dub {args.setting}", unit="clip"):
            row = rows_encoded[index]
            clip_id = row.get("clip_id") or f"clip{index:05d}"
            video = os.path.join(work, "clip.mp4")
            with open(video, "wb") as handle:
                handle.write(row["video"]["bytes"] or open(row["video"]["path"], "rb").read())
            conclusion, predicted = annotations[index], None
            if needs_reasoner:
                mode = pipe.config.get("reasoner_mode", "cot")
                response = reason(pipe.reasoner, pipe.reasoner_processor, [video], mode=mode)[0][0]
                parsed = parse_response(response, mode)
                predictions.append(parsed)
                predicted = parsed.scene_type if parsed else None
                conclusion = parsed if parsed else None
            if args.setting == "initial-reasoning" and predicted is None:
                predicted = "unparsed"  # an unreadable answer is a wrong one: another speaker's voice
            reference = select_reference(dataset, index, args.setting, rng, predicted_scene_type=predicted)
            if args.no_reference:
                reference = NO_REFERENCE
            transcripts.append(row["transcript"])
            entry = {"clip_id": clip_id, "transcript": row["transcript"], "reference_kind": reference.kind,
                     "reference_row": reference.source_index, "scene_type": scene_type_name(dataset, row["scene_type"]),
                     "predicted_scene_type": predicted, "scores": {}}
            waves = {"GT": load_audio_24k(row["audio"])}
            # Where the dataset says who speaks (the procedural corpus), LSE reads that mouth, and skips the clips whose
            # line no lips speak (narrations).
            mouth = speaker_mouth_bbox(row)
            lips_visible = mouth is not None or not row.get("characters")
            for name in systems:
                if ground_truth:
                    wave = waves["GT"]
                else:
                    out = pipe(video=video, text=row["transcript"], reference_audio=reference.audio,
                               reference_text=reference.text, conclusion=conclusion,
                               num_inference_steps=args.num_inference_steps,
                               generator=torch.Generator().manual_seed(args.seed + index), **CONDITIONS[name])
                    wave = np.asarray(out.audios[0], dtype=np.float32)
                    waves[ABLATION_NAMES[name] if len(systems) > 1 else "Ours"] = wave
                path = os.path.join(args.output_dir, "audio", name, f"{clip_id}.wav")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                save_audio(path, wave, 24000)
                scores = scorer.score((wave, 24000), (waves["GT"], 24000), row["transcript"], dubbed_video=video,
                                      mouth_bbox=mouth, lips_visible=lips_visible)  # fmt: skip
                clip_scores[name].append(scores)
                entry["scores"][name] = scores
            per_clip.append(entry)
            if index < args.num_plots:
                plot_mel_comparison(waves, os.path.join(args.output_dir, f"mel_{clip_id}.png"),
                                    title=row["transcript"])  # fmt: skip

    rows = {}
    for name in systems:
        label = "GT" if ground_truth else (ABLATION_NAMES[name] if len(systems) > 1 else "Ours")
        rows[label] = aggregate_scores(clip_scores[name], transcripts, scorer.unavailable)
    reasoning = None
    if predictions:
        reasoning = reasoning_metrics(predictions, annotations)  # unreadable answers are CoTFailures: wrong
        plot_confusion_matrix(reasoning, os.path.join(args.output_dir, "confusion_matrix.png"))
        for row in rows.values():
            row.update({k: reasoning[k] for k in ("accuracy", "average_recall", "recall")})
    table = "ablation" if len(systems) > 1 else args.setting
    markdown = results_to_markdown(rows, table, first_column="Condition" if table == "ablation" else "System")
    if scorer.unavailable:
        markdown += "\n" + "".join(f"- {k}: n/a, {why}\n" for k, why in scorer.unavailable.items())
    if args.no_reference:
        markdown += "\nNo reference voice (`--no_reference`): every line in the model's own voice.\n"
    report = {"model": args.model, "dataset": args.dataset, "dataset_config_name": args.dataset_config_name,
              "split": args.split, "setting": args.setting, "reference_voice": not args.no_reference, "table": table,
              "results": rows, "reasoning": reasoning, "clips": per_clip}  # fmt: skip
    write_atomically(os.path.join(args.output_dir, "results.json"), json.dumps(report, indent=2, default=str))
    write_atomically(os.path.join(args.output_dir, "results.md"), markdown)
    print(markdown)
    return rows


def load_audio_24k(audio) -> np.ndarray:
    from deepdubber_hf.audio import load_audio

    return load_audio(audio, 24000).numpy()


def write_atomically(path: str, text: str) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def main(args) -> dict:
    if args.setting:
        return evaluate_quality(args)
    pipe = load_pipeline(args.model)
    dataset = load_rows(args)
    conclusions = reference_conclusions(dataset)
    rows = dataset.select_columns(["video", "transcript", "mouth_openness", "fps"]).cast_column(
        "video", datasets.Video(decode=False)
    )
    chosen = []
    for index, row in enumerate(rows.select_columns(["mouth_openness", "fps"])):
        span = mouth_motion_span(row["mouth_openness"], row["fps"])
        if span is not None:
            chosen.append((index, span))
        if args.num_clips is not None and len(chosen) == args.num_clips:
            break
    if not chosen:
        raise ValueError(f"no clip of --dataset {args.dataset!r} ({args.split}) has moving mouths to time against.")
    planned = {name: [] for name in args.conditions}
    truth = []
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="deepdubber-timing-") as work:
        for index, (start, end) in tqdm(chosen, desc="Timing", unit="clip"):
            row = rows[index]
            video = os.path.join(work, "clip.mp4")
            with open(video, "wb") as handle:
                handle.write(row["video"]["bytes"])
            if args.pad_video_s > 0:
                before, after = np.random.default_rng([args.seed, index]).uniform(0, args.pad_video_s, size=2)
                before, after = round(before * row["fps"]) / row["fps"], round(after * row["fps"]) / row["fps"]
                pad_video(video, before, after, os.path.join(work, "padded.mp4"))
                video, start, end = os.path.join(work, "padded.mp4"), start + before, end + before
            truth.append((start, end))
            for name in args.conditions:
                plan = pipe.plan_dub(video, row["transcript"],
                                     conclusion=None if args.use_reasoner else conclusions[index],
                                     **CONDITIONS[name])  # fmt: skip
                onset, duration = plan.onsets_s[0], plan.durations_s[0]
                planned[name].append((onset, onset + duration))
    results = {name: timing_errors(spans, truth) for name, spans in planned.items()}
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "timing.json"), "w") as handle:
        json.dump({"model": args.model, "dataset": args.dataset, "split": args.split,
                   "pad_video_s": args.pad_video_s, "results": results}, handle, indent=2)  # fmt: skip
    markdown = to_markdown(args.model, results, args.pad_video_s)
    with open(os.path.join(args.output_dir, "timing.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return results


if __name__ == "__main__":
    main(parse_args())
