"""The procedural CoT movie-dubbing corpus: clips generated from seeds and written in the Hugging Face Hub layout.

One clip = plan (`scenes.py`) → speech per turn (`speech.py`) → frames whose mouths follow each speaker's own
speech energy (`render.py`) → silent mp4 + 24 kHz wav + labels + CoT annotation (`annotate.py`).

The output folder is a dataset repository: ``data/level{1,2}/{train,test}-XXXXX-of-YYYYY.parquet`` shards holding
the video and audio bytes, and a ``README.md`` card whose YAML ``configs`` name the shards, so that
``datasets.load_dataset(folder, "level1", split="test")`` works offline and ``push_to_hub`` publishes it as is.
Every clip's seed derives from (corpus seed, level, clip index): the same seed gives the same bytes, whatever the
number of workers, and an interrupted run resumes at the first missing shard (shards are written to a temporary
file and renamed).
"""

from __future__ import annotations

import io
import json
import math
import os
import wave
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from .annotate import annotate
from .schema import FPS, SAMPLING_RATE, SCENE_TYPES, ScenePlan

MIN_DURATION_S = 1.0
MAX_DURATION_S = 6.0
SHARD_SIZE = 50


def clip_seed(seed: int, level: int, index: int) -> int:
    """A 63-bit seed for clip `index` of `level`, independent of every other clip."""
    return int(np.random.SeedSequence([seed, level, index]).generate_state(2, dtype=np.uint32).astype(np.uint64)
               .dot([1 << 31, 1]))


def wav_bytes(waveform: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> bytes:
    """16-bit PCM mono wav in memory (deterministic: no timestamps)."""
    pcm = (np.clip(waveform, -1.0, 1.0) * 32767).round().astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sampling_rate)
        handle.writeframes(pcm)
    return buffer.getvalue()


def _assign_voices(plan: ScenePlan, rng: np.random.Generator) -> None:
    from .speech import choose_voice

    taken = []  # two speakers of one clip never share a voice
    for index in sorted({turn.speaker for turn in plan.turns}):
        voice = choose_voice(plan.characters[index], rng, avoid=taken)
        taken.append(voice)
        plan.characters[index].voice = voice.to_dict()


def _speak(plan: ScenePlan, rng: np.random.Generator) -> list:
    """Texts and speech for every turn, short enough that the clip lasts at most 6 s."""
    from .grammar import SentenceGrammar
    from .speech import VoiceSpec, synthesize

    grammar = SentenceGrammar()
    gap = float(rng.uniform(0.15, 0.4))
    margins = float(rng.uniform(0.2, 0.5)) + float(rng.uniform(0.2, 0.4))
    max_words = 9
    while True:
        waves = []
        for turn in plan.turns:
            turn.text = grammar.sentence(rng, max_words=max_words)
            speaker = plan.characters[turn.speaker]
            waves.append(synthesize(turn.text, VoiceSpec.from_dict(speaker.voice), speaker.emotion, rng))
        total = sum(len(w) for w in waves) / SAMPLING_RATE + gap * (len(waves) - 1) + margins
        if total <= MAX_DURATION_S:
            return waves
        minimum_turns = 2 if plan.scene_type == "dialogue" else 1
        if len(plan.turns) > minimum_turns:
            plan.turns = plan.turns[:-1]
        elif max_words > 3:
            max_words -= 2
        else:
            raise RuntimeError(f"clip {plan.clip_id}: even three-word sentences last over {MAX_DURATION_S} s")


def _place(plan: ScenePlan, waves: list, rng: np.random.Generator):
    """Put the turns on a timeline: the audio track and, per character, its mouth openness per frame."""
    from .speech import speech_energy

    start = float(rng.uniform(0.2, 0.5))
    gap = float(rng.uniform(0.15, 0.4))
    tail = float(rng.uniform(0.2, 0.4))
    t = start
    for turn, waveform in zip(plan.turns, waves):
        turn.start_s = round(t, 4)
        turn.end_s = round(t + len(waveform) / SAMPLING_RATE, 4)
        t = turn.end_s + gap
    plan.duration_s = round(max(MIN_DURATION_S, plan.turns[-1].end_s + tail), 2)
    track = np.zeros(int(round(plan.duration_s * SAMPLING_RATE)) + 1, dtype=np.float32)
    mouth = np.zeros((len(plan.characters), plan.num_frames), dtype=np.float32)
    for turn, waveform in zip(plan.turns, waves):
        offset = int(round(turn.start_s * SAMPLING_RATE))
        segment = waveform[: max(0, len(track) - offset)]
        track[offset : offset + len(segment)] += segment
        if plan.characters[turn.speaker].talking:
            energy = speech_energy(waveform, fps=FPS, sampling_rate=SAMPLING_RATE)
            first = int(round(turn.start_s * FPS))
            last = min(plan.num_frames, first + len(energy))
            mouth[turn.speaker, first:last] = np.maximum(mouth[turn.speaker, first:last], energy[: last - first])
    return track[: int(round(plan.duration_s * SAMPLING_RATE))], mouth


def _reference(plan: ScenePlan, speaker: int, rng: np.random.Generator, avoid: set):
    """A second utterance of `speaker`'s voice (Dub 2.0's reference), with a sentence not in the clip."""
    from .grammar import SentenceGrammar
    from .speech import VoiceSpec, synthesize

    grammar = SentenceGrammar()
    text = grammar.sentence(rng)
    for _ in range(8):
        if text not in avoid:
            break
        text = grammar.sentence(rng)
    character = plan.characters[speaker]
    return synthesize(text, VoiceSpec.from_dict(character.voice), character.emotion, rng), text


def generate_clip(
    clip_id: str, level: int, seed: int, scene_type: str | None = None, camera_motion: bool = True
) -> dict:
    """One clip as a row of the corpus (media as bytes), everything drawn from `seed`.

    `scene_type` forces the scene type; `camera_motion=False` holds the camera still (for measuring the mouths
    in tests: everything else about the clip stays the same).
    """
    from .render import encode_video, render_clip
    from .scenes import sample_plan

    plan = sample_plan(clip_id, level, seed, scene_type=scene_type)
    rng = np.random.default_rng([seed, 1])
    _assign_voices(plan, rng)
    waves = _speak(plan, rng)
    track, mouth = _place(plan, waves, rng)
    frames, layout = render_clip(plan, mouth, np.random.default_rng([seed, 2]), camera_motion=camera_motion)
    video = encode_video(frames, fps=FPS, crf=int(rng.integers(23, 33)))

    speakers = list(dict.fromkeys(turn.speaker for turn in plan.turns))  # in order of first turn
    texts = {turn.text for turn in plan.turns}
    references = [_reference(plan, s, rng, texts) for s in speakers]
    labels = annotate(plan, layout, np.random.default_rng([seed, 3]))
    target = plan.characters[plan.target_speaker]
    second = references[1] if len(references) > 1 else None
    return {
        "clip_id": clip_id,
        "level": level,
        "video": {"bytes": video, "path": f"{clip_id}.mp4"},
        "audio": {"bytes": wav_bytes(track), "path": f"{clip_id}.wav"},
        "transcript": " ".join(turn.text for turn in plan.turns),
        "scene_type": plan.scene_type,
        "num_characters": len(plan.visible_characters),
        "num_speakers": len(speakers),
        "speaker_gender": target.gender,
        "speaker_age": target.age,
        "speaker_emotion": target.emotion,
        "target_speaker": plan.target_speaker,
        "speaker_id": _voice_id(target.voice),
        "characters": [
            {**{k: v for k, v in c.to_dict().items() if k != "voice"},
             "voice": json.dumps(c.voice, sort_keys=True) if c.voice else None,
             "bbox": list(layout[i]["bbox"]) if layout[i] else [],
             "mouth_bbox": list(layout[i]["mouth_bbox"]) if layout[i] else []}
            for i, c in enumerate(plan.characters)
        ],
        "turns": [t.to_dict() for t in plan.turns],
        "mouth_openness": [row.round(4).tolist() for row in mouth],
        "reference_audio": {"bytes": wav_bytes(references[0][0]), "path": f"{clip_id}-reference.wav"},
        "reference_text": references[0][1],
        "second_speaker_reference_audio": (
            {"bytes": wav_bytes(second[0]), "path": f"{clip_id}-reference-2.wav"} if second else None
        ),
        "second_speaker_reference_text": second[1] if second else None,
        "cot": labels["cot"],
        "cot_instruction": labels["cot_instruction"],
        "question": labels["question"],
        "answer": labels["answer"],
        "duration_s": plan.duration_s,
        "fps": FPS,
        "width": plan.width,
        "height": plan.height,
        "seed": seed,
    }


def _voice_id(voice: dict | None) -> str | None:
    """A short stable id of a voice, so that rows of the same speaker can be found (Dub 2.0 / 3.0)."""
    if not voice:
        return None
    import hashlib

    return hashlib.sha1(json.dumps(voice, sort_keys=True).encode()).hexdigest()[:12]


def corpus_features():
    """The `datasets.Features` of the corpus (documented column by column in the dataset card)."""
    from datasets import Audio, ClassLabel, Features, List, Value, Video

    character = {
        "species": Value("string"), "gender": Value("string"), "age": Value("string"), "emotion": Value("string"),
        "visible": Value("bool"), "talking": Value("bool"), "voice": Value("string"), "bbox": List(Value("int32")),
        "mouth_bbox": List(Value("int32")),
    }  # fmt: skip
    turn = {"speaker": Value("int32"), "text": Value("string"), "start_s": Value("float32"), "end_s": Value("float32")}
    return Features({
        "clip_id": Value("string"),
        "level": Value("int32"),
        "video": Video(),
        "audio": Audio(sampling_rate=SAMPLING_RATE),
        "transcript": Value("string"),
        "scene_type": ClassLabel(names=list(SCENE_TYPES)),
        "num_characters": Value("int32"),
        "num_speakers": Value("int32"),
        "speaker_gender": Value("string"),
        "speaker_age": Value("string"),
        "speaker_emotion": Value("string"),
        "target_speaker": Value("int32"),
        "speaker_id": Value("string"),
        "characters": List(character),
        "turns": List(turn),
        "mouth_openness": List(List(Value("float32"))),
        "reference_audio": Audio(sampling_rate=SAMPLING_RATE),
        "reference_text": Value("string"),
        "second_speaker_reference_audio": Audio(sampling_rate=SAMPLING_RATE),
        "second_speaker_reference_text": Value("string"),
        "cot": Value("string"),
        "cot_instruction": Value("string"),
        "question": Value("string"),
        "answer": Value("string"),
        "duration_s": Value("float32"),
        "fps": Value("int32"),
        "width": Value("int32"),
        "height": Value("int32"),
        "seed": Value("int64"),
    })  # fmt: skip


def _generate(args):
    return generate_clip(*args)


def shard_plan(num_clips: int, test_fraction: float, shard_size: int = SHARD_SIZE) -> list:
    """`(split, shard index, number of shards, clip indices)` for every shard; the last clips are the test split."""
    num_test = min(num_clips - 1, max(1, int(round(num_clips * test_fraction))))  # both splits exist
    splits = {"train": list(range(num_clips - num_test)), "test": list(range(num_clips - num_test, num_clips))}
    shards = []
    for split, indices in splits.items():
        count = math.ceil(len(indices) / shard_size)
        for k in range(count):
            shards.append((split, k, count, indices[k * shard_size : (k + 1) * shard_size]))
    return shards


def generate_corpus(
    output_dir: str,
    level: int,
    num_clips: int,
    seed: int = 0,
    workers: int = 1,
    test_fraction: float = 0.2,
    shard_size: int = SHARD_SIZE,
    progress: bool = True,
) -> list:
    """Generate `num_clips` clips of `level` into `output_dir` (resumable) and (re)write its dataset card.

    Returns the paths of the shards of this level.
    """
    from datasets import Dataset
    from tqdm.auto import tqdm

    if level not in (1, 2):
        raise ValueError(f"--level must be 1 (people) or 2 (animals), got {level!r}.")
    if num_clips < 2:
        raise ValueError(f"--num-clips must be at least 2 (a train and a test clip), got {num_clips}.")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}.")
    folder = os.path.join(output_dir, "data", f"level{level}")
    os.makedirs(folder, exist_ok=True)
    _check_same_corpus(output_dir, level, num_clips, seed, test_fraction, shard_size)
    features = corpus_features()
    shards = shard_plan(num_clips, test_fraction, shard_size)
    paths = [os.path.join(folder, f"{split}-{k:05d}-of-{n:05d}.parquet") for split, k, n, _ in shards]
    todo = [(shard, path) for shard, path in zip(shards, paths) if not os.path.isfile(path)]
    bar = tqdm(total=num_clips, initial=num_clips - sum(len(s[3]) for s, _ in todo), unit="clip",
               desc=f"level {level}", disable=not progress)
    executor = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        for (split, _, _, indices), path in todo:
            jobs = [(f"l{level}-{i:06d}", level, clip_seed(seed, level, i)) for i in indices]
            rows = []
            for row in (executor.map(_generate, jobs) if executor else map(_generate, jobs)):
                rows.append(row)
                bar.update(1)
            tmp = f"{path}.tmp-{os.getpid()}"
            Dataset.from_list(rows, features=features).to_parquet(tmp)
            os.replace(tmp, path)  # a shard is either complete or absent
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown()
    write_card(output_dir)
    return paths


def _check_same_corpus(output_dir, level, num_clips, seed, test_fraction, shard_size):
    """Resuming must continue the same corpus: a folder made with other settings is an error, not a mix."""
    settings_path = os.path.join(output_dir, "data", f"level{level}", "generation.json")
    settings = {"level": level, "num_clips": num_clips, "seed": seed, "test_fraction": test_fraction,
                "shard_size": shard_size}
    if os.path.isfile(settings_path):
        with open(settings_path) as handle:
            previous = json.load(handle)
        if previous != settings:
            raise ValueError(
                f"{output_dir!r} already holds a level-{level} corpus made with {previous}; these settings are "
                f"{settings}: use another output folder or the same settings to resume."
            )
        return
    tmp = settings_path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(settings, handle, indent=1)
    os.replace(tmp, settings_path)


def write_card(output_dir: str) -> str:
    """(Re)write README.md: YAML configs for the levels present, and a description of every column."""
    from .card import dataset_card

    text = dataset_card(output_dir)
    path = os.path.join(output_dir, "README.md")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


__all__ = [
    "MAX_DURATION_S",
    "MIN_DURATION_S",
    "clip_seed",
    "corpus_features",
    "generate_clip",
    "generate_corpus",
    "shard_plan",
    "wav_bytes",
    "write_card",
]
