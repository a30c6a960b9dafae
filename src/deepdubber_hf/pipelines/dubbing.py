"""The video side of `DeepDubberPipeline`: which lines go where in a clip, whose voice speaks them, the dubbed
track, and the mux of that track into the clip.

A *segment* is one line with the time window it must be spoken in: the whole clip for a single line, a cue's
window for subtitles. The pipeline places the speech of each segment inside its window (where the duration
predictor says the mouths move), and :func:`assemble_track` lays the pieces on one track as long as the video.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from ..audio import save_audio

# The fastest speech a line may need to fit its window: about twice ordinary read speech (~14 bytes a second).
MAX_BYTES_PER_SECOND = 28.0
# A reference voice shorter than this carries too little of the voice to clone.
MIN_REFERENCE_SECONDS = 0.5
# Peak level under which a reference recording counts as silent (full scale is 1.0).
SILENCE_PEAK = 1e-3


@dataclass
class Segment:
    """One line to dub: `text`, spoken inside the window `start_s`–`end_s` of the clip by `speaker`."""

    text: str
    start_s: float
    end_s: float
    speaker: Optional[str] = None

    @property
    def window_s(self) -> float:
        return self.end_s - self.start_s


def plan_segments(text, subtitles, video_duration_s: float) -> list[Segment]:
    """The segments of a call: `text` over the whole clip, or one per subtitle cue (an SRT path or text, or
    parsed `Cue`s), each window cut at the end of the video. Checks that every line can fit its window."""
    from ..subtitles import Cue, parse_srt

    if subtitles is None:
        if not isinstance(text, str):
            raise ValueError(
                "with a video, `text` is the one line to dub (a string); give several timed lines as `subtitles` "
                "(an .srt file)."
            )
        segments = [Segment(text, 0.0, video_duration_s)]
    else:
        if text is not None:
            raise ValueError("give the lines either as `text` or as `subtitles`, not both.")
        cues = subtitles if isinstance(subtitles, (list, tuple)) else parse_srt(subtitles)
        if not cues or not all(isinstance(cue, Cue) for cue in cues):
            raise ValueError("`subtitles` holds no cue: pass an .srt file with at least one timed line.")
        segments = []
        for cue in cues:
            if cue.start_s >= video_duration_s:
                raise ValueError(
                    f"subtitle {cue.index} starts at {cue.start_s:.2f} s, after the end of the video "
                    f"({video_duration_s:.2f} s): check that the .srt belongs to this video."
                )
            segments.append(Segment(cue.text, cue.start_s, min(cue.end_s, video_duration_s), cue.speaker))
    for segment in segments:
        if not segment.text.strip():
            raise ValueError("`text` is empty or whitespace: give the words to speak.")
        needed = len(segment.text.encode("utf-8")) / MAX_BYTES_PER_SECOND
        if needed > segment.window_s:
            where = "the clip" if subtitles is None else (
                f"its subtitle window ({segment.start_s:.2f}-{segment.end_s:.2f} s)"
            )
            raise ValueError(
                f"the line {_short(segment.text)!r} is too long for {where}: it needs at least {needed:.2f} s of "
                f"speech and the window lasts {segment.window_s:.2f} s. Shorten the line or give it a longer window."
            )
    return segments


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_voice_list(value) -> bool:
    # A list of voices, as opposed to one voice given as (waveform, sampling_rate) or an array.
    return isinstance(value, list)


def assign_voices(segments: list[Segment], reference_audio, reference_text) -> list[tuple[Any, Optional[str]]]:
    """(reference audio, its transcript) per segment.

    One voice (a path, a waveform, `(waveform, sampling_rate)`, an audio dict) speaks every line. Several voices
    are a list, one per speaker in the order the speakers first appear in the subtitles (with transcripts as a
    list of the same length), or a dict from speaker name to voice (and to transcript)."""
    if reference_audio is None:
        if reference_text is not None:
            raise ValueError("`reference_text` was given without `reference_audio`.")
        return [(None, None)] * len(segments)
    if reference_text is None:
        raise ValueError("`reference_audio` needs its transcript `reference_text` (the model infills after it).")
    if isinstance(reference_audio, dict) and "array" not in reference_audio:
        if not isinstance(reference_text, dict) or set(reference_text) != set(reference_audio):
            raise ValueError("with voices given by speaker name, give `reference_text` as a dict with the same names.")
        missing = sorted({s.speaker for s in segments if s.speaker not in reference_audio}, key=str)
        if missing:
            raise ValueError(
                f"no voice for speaker(s) {missing} of the subtitles: `reference_audio` has {sorted(reference_audio)}."
            )
        return [(reference_audio[s.speaker], reference_text[s.speaker]) for s in segments]
    if not _is_voice_list(reference_audio):
        if not isinstance(reference_text, str):
            raise ValueError("one `reference_audio` takes one transcript: give `reference_text` as a string.")
        return [(reference_audio, reference_text)] * len(segments)
    texts = reference_text if isinstance(reference_text, list) else None
    if texts is None or len(texts) != len(reference_audio):
        raise ValueError(
            f"{len(reference_audio)} reference voices need as many transcripts: give `reference_text` as a list of "
            f"{len(reference_audio)} strings."
        )
    speakers = list(dict.fromkeys(s.speaker for s in segments))
    if len(reference_audio) == 1:
        return [(reference_audio[0], texts[0])] * len(segments)
    if None in speakers:
        raise ValueError(
            "several reference voices were given but a line has no speaker: name every line's speaker in the "
            "subtitles (`ALICE: ...` or `[Alice] ...`)."
        )
    if len(speakers) != len(reference_audio):
        raise ValueError(
            f"the subtitles name {len(speakers)} speaker(s) ({', '.join(speakers)}) but {len(reference_audio)} "
            "reference voices were given: give one voice per speaker, in the order they first speak (or a dict "
            "from name to voice)."
        )
    voice = {name: (audio, text) for name, audio, text in zip(speakers, reference_audio, texts)}
    return [voice[s.speaker] for s in segments]


def check_reference_waveform(waveform: torch.Tensor, sampling_rate: int) -> None:
    """A clear error for a reference voice that cannot be cloned: silent, or too short."""
    seconds = waveform.shape[-1] / sampling_rate
    if seconds < MIN_REFERENCE_SECONDS:
        raise ValueError(
            f"`reference_audio` lasts {seconds:.2f} s, shorter than {MIN_REFERENCE_SECONDS} s: give a few seconds of "
            "the voice speaking."
        )
    if float(waveform.abs().max()) < SILENCE_PEAK:
        raise ValueError("`reference_audio` is silent: give a recording of the voice speaking.")


def assemble_track(pieces: list[tuple[float, np.ndarray]], duration_s: float, sampling_rate: int) -> np.ndarray:
    """One mono track of `duration_s` with each `(onset_s, waveform)` piece added at its onset (cut at the end)."""
    track = np.zeros(int(round(duration_s * sampling_rate)), dtype=np.float32)
    for onset_s, wave in pieces:
        start = min(len(track), max(0, int(round(onset_s * sampling_rate))))
        part = np.asarray(wave, dtype=np.float32)[: len(track) - start]
        track[start : start + len(part)] += part
    return np.clip(track, -1.0, 1.0)


AUDIO_CODECS = {".mkv": "flac", ".mov": "aac", ".mp4": "aac", ".m4v": "aac", ".webm": "libopus"}


def check_video_output(output_path) -> str:
    """The audio codec for a dubbed video at `output_path`; a clear error for an unknown extension or a missing
    folder, before any work is done."""
    output_path = os.fspath(output_path)
    folder = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"the folder of {output_path!r} does not exist: create it first.")
    extension = os.path.splitext(output_path)[1].lower()
    if extension not in AUDIO_CODECS:
        raise ValueError(
            f"cannot write a video named {output_path!r}: end it with one of {', '.join(sorted(AUDIO_CODECS))}."
        )
    return AUDIO_CODECS[extension]


def mux_audio_into_video(video_path: str, audio: np.ndarray, sampling_rate: int, output_path: str) -> None:
    """Write `video_path`'s video stream (copied, not re-encoded) with `audio` as its only audio track to
    `output_path`. The file appears only once complete: ffmpeg writes a temporary file beside it, renamed at the
    end, so a failure leaves no half-written output."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("saving a dubbed video needs the `ffmpeg` program: install it (e.g. apt install ffmpeg).")
    codec = check_video_output(output_path)
    output_path = os.fspath(output_path)
    folder = os.path.dirname(os.path.abspath(output_path))
    extension = os.path.splitext(output_path)[1]
    with tempfile.TemporaryDirectory(prefix="deepdubber-mux-") as work:
        wav = os.path.join(work, "track.wav")
        save_audio(wav, torch.as_tensor(audio), sampling_rate)
        handle, partial = tempfile.mkstemp(prefix=".partial-", suffix=extension, dir=folder)
        os.close(handle)
        try:
            command = [ffmpeg, "-y", "-v", "error", "-i", os.fspath(video_path), "-i", wav, "-map", "0:v:0",
                       "-map", "1:a:0", "-c:v", "copy", "-c:a", codec, partial]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(
                    f"ffmpeg could not mux the dubbed audio into {output_path!r}: {result.stderr.strip()}"
                )
            os.replace(partial, output_path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)


def dubbing_components(transformer, controlnet_layers: int = 2, video_encoder=None, image_processor=None,
                       condition_encoder=None, condition_tokenizer=None, duration_predictor_layers: int = 2) -> dict:
    """The stage-2.2 components for a `DeepDubberPipeline` around `transformer` (a trained DiT): a ControlNet copying
    its first `controlnet_layers` blocks, a fresh duration predictor, and the given video and condition encoders
    (the tiny random CLIP and T5 of `deepdubber_hf.models.conditioning` when not given)."""
    from ..models.conditioning import build_condition_tokenizer, tiny_condition_encoder, tiny_video_encoder
    from ..models.controlnet_dit import DeepDubberControlNetModel
    from ..models.duration_predictor import DurationPredictorModel

    if video_encoder is None:
        video_encoder, image_processor = tiny_video_encoder()
    if image_processor is None:
        raise ValueError("a video encoder needs its image processor (e.g. CLIPImageProcessor).")
    if condition_encoder is None:
        condition_tokenizer = condition_tokenizer or build_condition_tokenizer()
        condition_encoder = tiny_condition_encoder(condition_tokenizer)
    if condition_tokenizer is None:
        raise ValueError("a condition encoder needs its tokenizer.")
    video_dim = video_encoder.config.projection_dim
    condition_dim = condition_encoder.config.d_model
    controlnet = DeepDubberControlNetModel.from_transformer(
        transformer, num_layers=controlnet_layers, video_dim=video_dim, condition_dim=condition_dim,
        num_fusion_heads=transformer.config.num_attention_heads,
    )  # fmt: skip
    width = min(256, transformer.config.num_attention_heads * transformer.config.attention_head_dim)
    duration_predictor = DurationPredictorModel(
        video_dim=video_dim, condition_dim=condition_dim, vocab_size=transformer.config.vocab_size,
        hidden_size=width, num_layers=duration_predictor_layers, num_attention_heads=4,
    )  # fmt: skip
    # In eval mode, as `from_pretrained` gives models (no dropout at inference); training scripts call `train()`.
    for module in (controlnet, duration_predictor, video_encoder, condition_encoder):
        module.eval()
    return {"controlnet": controlnet, "duration_predictor": duration_predictor, "video_encoder": video_encoder,
            "image_processor": image_processor, "condition_encoder": condition_encoder,
            "condition_tokenizer": condition_tokenizer}  # fmt: skip


__all__ = [
    "MAX_BYTES_PER_SECOND",
    "MIN_REFERENCE_SECONDS",
    "Segment",
    "assemble_track",
    "assign_voices",
    "check_reference_waveform",
    "check_video_output",
    "dubbing_components",
    "mux_audio_into_video",
    "plan_segments",
]
