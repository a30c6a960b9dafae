"""Speaker similarity (SPK-SIM) of the dubbing papers: the cosine between a speaker embedding of the generated speech
and one of the reference (ground-truth) speech, averaged over the pairs.

Two embedding backends:

- `GE2ESpeakerEncoder`: the GE2E d-vector of resemblyzer (Wan et al., 2018), what StyleDubber reports SPK-SIM with.
  It ships its weights, so it is the offline default. Its embeddings are non-negative and L2-normalised, so its
  cosines lie in [0, 1].
- `WavLMSpeakerEncoder`: a transformers `WavLMForXVector` (e.g. a local copy of `microsoft/wavlm-base-plus-sv`),
  the x-vector used by most zero-shot TTS papers. Its cosines lie in [-1, 1].
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from transformers.utils import logging

from deepdubber_hf.audio import AudioInput, load_audio

logger = logging.get_logger(__name__)

GE2E_SAMPLING_RATE = 16_000


class UtteranceEncoder:
    """Base of the embedding backends (speaker here, emotion in `evaluation.emotion`): audio → one fixed-size
    embedding per utterance.

    A backend sets `sampling_rate` (the rate its model expects) and `name` (recorded next to the scores), and
    implements `embed_waveform`. Any object with these attributes and an `embed` method can be passed to
    :func:`speaker_similarity` or `emotion_similarity`.
    """

    sampling_rate: int = GE2E_SAMPLING_RATE
    name: str = "encoder"
    # What the embedding describes, for error messages.
    kind: str = "speaker"

    def embed_waveform(self, waveform: torch.Tensor) -> np.ndarray:
        """Mono waveform ``(nw,)`` at `self.sampling_rate` → embedding ``(d,)``."""
        raise NotImplementedError

    def embed(self, audio: AudioInput) -> np.ndarray:
        """Embedding ``(d,)`` of one utterance.

        Args:
            audio:
                Anything :func:`deepdubber_hf.audio.load_audio` takes: a file path, a `(waveform, sampling_rate)`
                tuple, a `datasets` Audio dict or decoder, or a bare 1-D waveform, which must already be at
                `self.sampling_rate`.
        """
        waveform = load_audio(audio, sampling_rate=self.sampling_rate)
        if waveform.numel() == 0 or not bool(torch.any(waveform != 0)):
            raise ValueError(f"the audio is empty or silent: a {self.kind} embedding needs speech.")
        embedding = np.asarray(self.embed_waveform(waveform), dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(embedding)) or not np.any(embedding):
            raise ValueError(f"the {self.name} embedding of the audio is zero or not finite: is the clip speech?")
        return embedding


class SpeakerEncoder(UtteranceEncoder):
    """Base of the speaker-embedding backends (see [`UtteranceEncoder`])."""

    name: str = "speaker encoder"


class GE2ESpeakerEncoder(SpeakerEncoder):
    """The GE2E speaker encoder of resemblyzer (3-layer LSTM d-vector, 256 dimensions, 16 kHz).

    Audio goes through resemblyzer's own preprocessing (volume normalised to -30 dBFS, long silences removed by
    WebRTC voice-activity detection), then the utterance embedding is the normalised mean of 1.6 s partial embeddings,
    as StyleDubber computes its SPK-SIM.

    Args:
        weights_path (`str`, *optional*):
            A resemblyzer checkpoint (`.pt`); the `pretrained.pt` the package ships by default.
        device (`str`, *optional*, defaults to `"cpu"`):
            Where the LSTM runs.
    """

    sampling_rate = GE2E_SAMPLING_RATE

    def __init__(self, weights_path: str | None = None, device: str = "cpu"):
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as error:
            raise ImportError(
                "the GE2E speaker encoder needs resemblyzer: pip install --no-deps resemblyzer==0.1.4 plus the `eval` "
                "extra of deepdubber-hf (it provides webrtcvad-wheels and librosa)."
            ) from error
        if weights_path is not None and not os.path.isfile(weights_path):
            raise FileNotFoundError(
                f"GE2E weights {weights_path!r} do not exist: pass a resemblyzer `.pt` checkpoint, or None for the "
                "weights resemblyzer ships."
            )
        self.model = VoiceEncoder(device=device, verbose=False, weights_fpath=weights_path)
        self.name = "GE2E (resemblyzer)" if weights_path is None else f"GE2E (resemblyzer, {weights_path})"

    def embed_waveform(self, waveform: torch.Tensor) -> np.ndarray:
        from resemblyzer import preprocess_wav

        # Already at 16 kHz, so no `source_sr`: resemblyzer only normalises the volume and trims silences.
        wav = preprocess_wav(waveform.numpy().astype(np.float32))
        if len(wav) == 0:
            raise ValueError("no speech is left after GE2E's voice-activity trimming: the clip is silent or too short.")
        return self.model.embed_utterance(wav)


class WavLMSpeakerEncoder(SpeakerEncoder):
    """A WavLM x-vector speaker encoder from transformers (`WavLMForXVector` and its feature extractor).

    Args:
        model_name_or_path (`str`):
            A folder holding a `WavLMForXVector` checkpoint and its `preprocessor_config.json` (e.g. a local copy of
            `microsoft/wavlm-base-plus-sv`), or a Hub id already in the local cache.
        device (`str`, *optional*, defaults to `"cpu"`):
            Where the model runs.
    """

    def __init__(self, model_name_or_path: str, device: str = "cpu"):
        from transformers import AutoConfig, AutoFeatureExtractor, WavLMForXVector

        try:
            config = AutoConfig.from_pretrained(model_name_or_path)
            feature_extractor = AutoFeatureExtractor.from_pretrained(model_name_or_path)
        except OSError as error:
            raise OSError(
                f"could not load the WavLM x-vector model {model_name_or_path!r} ({error}); pass a local folder with "
                "its config.json, weights and preprocessor_config.json (nothing is downloaded offline)."
            ) from error
        if config.model_type != "wavlm":
            raise ValueError(
                f"{model_name_or_path!r} holds a {config.model_type!r} model, not WavLM: pass a WavLMForXVector "
                "checkpoint such as microsoft/wavlm-base-plus-sv."
            )
        model, loading_info = WavLMForXVector.from_pretrained(model_name_or_path, output_loading_info=True)
        # A WavLM without its x-vector head (e.g. microsoft/wavlm-base-plus) would load with random TDNN layers.
        missing = sorted(loading_info["missing_keys"])
        if missing:
            raise ValueError(
                f"{model_name_or_path!r} is not a trained WavLMForXVector checkpoint: {', '.join(missing[:4])}"
                f"{' …' if len(missing) > 4 else ''} would be randomly initialised. Pass a speaker-verification model "
                "such as microsoft/wavlm-base-plus-sv."
            )
        self.feature_extractor = feature_extractor
        self.model = model.to(device).eval()
        self.device = device
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self.name = f"WavLM x-vector ({model_name_or_path})"

    @torch.no_grad()
    def embed_waveform(self, waveform: torch.Tensor) -> np.ndarray:
        inputs = self.feature_extractor(waveform.numpy(), sampling_rate=self.sampling_rate, return_tensors="pt")
        # One unpadded clip: its attention mask would be all ones, which is the same as none.
        embeddings = self.model(input_values=inputs["input_values"].to(self.device)).embeddings  # (1, d)
        return embeddings[0].float().cpu().numpy()


def load_speaker_encoder(
    backend: Literal["ge2e", "wavlm"] = "ge2e", model_name_or_path: str | None = None, device: str = "cpu"
) -> SpeakerEncoder:
    """Build a speaker-embedding backend.

    Args:
        backend (`str`, *optional*, defaults to `"ge2e"`):
            `"ge2e"` (resemblyzer, offline, StyleDubber's SPK-SIM) or `"wavlm"` (a `WavLMForXVector` checkpoint).
        model_name_or_path (`str`, *optional*):
            For `"wavlm"` the checkpoint folder (required); for `"ge2e"` an optional resemblyzer `.pt` checkpoint.
        device (`str`, *optional*, defaults to `"cpu"`):
            Where the model runs.

    Example:

    ```python
    >>> from deepdubber_hf.evaluation.speaker import load_speaker_encoder
    >>> encoder = load_speaker_encoder("ge2e")
    >>> encoder.sampling_rate
    16000
    ```
    """
    if backend == "ge2e":
        return GE2ESpeakerEncoder(weights_path=model_name_or_path, device=device)
    if backend == "wavlm":
        if model_name_or_path is None:
            raise ValueError(
                "backend 'wavlm' needs model_name_or_path: the folder of a WavLMForXVector checkpoint "
                "(e.g. a local copy of microsoft/wavlm-base-plus-sv)."
            )
        return WavLMSpeakerEncoder(model_name_or_path, device=device)
    raise ValueError(f"unknown speaker-encoder backend {backend!r}: choose 'ge2e' or 'wavlm'.")


def _check_pairs(generated: Sequence, references: Sequence, sampling_rate: int | None) -> tuple[list, list]:
    """Validate the (generated, reference) pairing and give bare waveforms their sampling rate."""
    checked = []
    for label, clips in (("generated", generated), ("references", references)):
        if isinstance(clips, (str, os.PathLike, dict, np.ndarray, torch.Tensor)):
            raise TypeError(f"`{label}` must be a list with one clip per pair, got a single {type(clips).__name__}: "
                            "wrap it in a list.")
        clips = list(clips)
        for index, clip in enumerate(clips):
            if isinstance(clip, (str, os.PathLike)) and not os.path.isfile(clip):
                raise FileNotFoundError(f"{label}[{index}]: audio file {os.fspath(clip)!r} does not exist.")
            if isinstance(clip, (np.ndarray, torch.Tensor)):
                if sampling_rate is None:
                    raise ValueError(
                        f"{label}[{index}] is a bare waveform with no sampling rate: pass `sampling_rate=` (the rate "
                        "of the bare waveforms) or give it as a (waveform, sampling_rate) tuple."
                    )
                clips[index] = (clip, sampling_rate)
        checked.append(clips)
    generated, references = checked
    if not generated and not references:
        raise ValueError("`generated` and `references` are empty: give at least one (generated, reference) pair.")
    if len(generated) != len(references):
        raise ValueError(
            f"{len(generated)} generated clips but {len(references)} references: give one reference per generated "
            "clip (repeat a reference to score several clips against it)."
        )
    return generated, references


def _pairwise_cosines(encoder, generated: list, references: list) -> list:
    """Cosine of each (generated, reference) pair; a file used several times is embedded once."""
    cache = {}

    def embed(label, index, clip):
        key = os.path.abspath(os.fspath(clip)) if isinstance(clip, (str, os.PathLike)) else None
        if key is not None and key in cache:
            return cache[key]
        try:
            embedding = encoder.embed(clip)
        except ValueError as error:
            raise ValueError(f"{label}[{index}]: {error}") from error
        if key is not None:
            cache[key] = embedding
        return embedding

    cosines = []
    for index, (generated_clip, reference_clip) in enumerate(zip(generated, references)):
        a = embed("generated", index, generated_clip)
        b = embed("references", index, reference_clip)
        if a.shape != b.shape:
            raise ValueError(f"pair {index}: embeddings of shapes {a.shape} and {b.shape}; use one encoder for both.")
        cosines.append(float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))))
    return cosines


def speaker_similarity(
    generated: Sequence[AudioInput],
    references: Sequence[AudioInput],
    encoder: SpeakerEncoder | None = None,
    sampling_rate: int | None = None,
) -> dict:
    """SPK-SIM: mean cosine similarity between speaker embeddings of generated and reference speech.

    Args:
        generated (`list`):
            The generated clips, each anything :func:`deepdubber_hf.audio.load_audio` takes (a path, a
            `(waveform, sampling_rate)` tuple, a `datasets` Audio dict or decoder, or a bare waveform).
        references (`list`):
            The reference (ground-truth) clips, one per generated clip, in the same forms.
        encoder (`SpeakerEncoder`, *optional*):
            The embedding backend (see :func:`load_speaker_encoder`); a `GE2ESpeakerEncoder` by default.
        sampling_rate (`int`, *optional*):
            The rate of the bare waveforms among the inputs; required only when there are some.

    Returns:
        `dict`: `spk_sim` (the mean cosine), `per_pair` (the cosine of each pair, in order), `num_pairs` and `encoder`
        (the backend's name).

    Example:

    ```python
    >>> import subprocess
    >>> from deepdubber_hf.evaluation.speaker import speaker_similarity
    >>> a = "The weather today is cold and the streets are empty."
    >>> b = "She opened the door and looked out at the quiet garden."
    >>> for name, voice, text in (("m_a.wav", "en-us+m3", a), ("m_b.wav", "en-us+m3", b), ("f_a.wav", "en-us+f3", a)):
    ...     _ = subprocess.run(["espeak-ng", "-w", name, "-v", voice, text], check=True)
    >>> result = speaker_similarity(["m_a.wav", "m_a.wav"], ["m_b.wav", "f_a.wav"])
    >>> [round(cosine, 2) for cosine in result["per_pair"]]  # the same voice scores high, another voice lower
    [0.94, 0.6]
    ```
    """
    generated, references = _check_pairs(generated, references, sampling_rate)
    encoder = encoder if encoder is not None else GE2ESpeakerEncoder()
    cosines = _pairwise_cosines(encoder, generated, references)
    return {
        "spk_sim": float(np.mean(cosines)),
        "per_pair": cosines,
        "num_pairs": len(cosines),
        "encoder": encoder.name,
    }


__all__ = [
    "GE2E_SAMPLING_RATE",
    "GE2ESpeakerEncoder",
    "SpeakerEncoder",
    "UtteranceEncoder",
    "WavLMSpeakerEncoder",
    "load_speaker_encoder",
    "speaker_similarity",
]
