"""Audio in and out: loading and resampling, F5-TTS's RMS normalisation and the Vocos/F5-TTS log-mel.

Mel settings are F5-TTS's (and the `charactr/vocos-mel-24khz` vocoder's): 24 kHz, 100 mel bins, n_fft 1024,
window 1024, hop 256 (93.75 frames per second), magnitude (power 1), HTK mel scale without normalisation,
centred frames, natural log of the magnitude clamped at 1e-5.
"""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np
import torch
import torchaudio
from torch import nn

SAMPLING_RATE = 24_000
NUM_MEL_BINS = 100
N_FFT = 1024
WIN_LENGTH = 1024
HOP_LENGTH = 256
TARGET_RMS = 0.1

AudioInput = Union[str, os.PathLike, np.ndarray, torch.Tensor, dict, tuple, Any]


class LogMelSpectrogram(nn.Module):
    """Waveform ``(b, nw)`` or ``(nw,)`` → log-mel ``(b, num_mel_bins, n)``, exactly as Vocos and F5-TTS compute it.

    Args:
        sampling_rate (`int`, *optional*, defaults to 24000)
        num_mel_bins (`int`, *optional*, defaults to 100)
        n_fft (`int`, *optional*, defaults to 1024)
        win_length (`int`, *optional*, defaults to 1024)
        hop_length (`int`, *optional*, defaults to 256)
    """

    def __init__(
        self,
        sampling_rate: int = SAMPLING_RATE,
        num_mel_bins: int = NUM_MEL_BINS,
        n_fft: int = N_FFT,
        win_length: int = WIN_LENGTH,
        hop_length: int = HOP_LENGTH,
    ):
        super().__init__()
        self.sampling_rate = sampling_rate
        self.hop_length = hop_length
        self.num_mel_bins = num_mel_bins
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sampling_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=num_mel_bins,
            power=1,
            center=True,
            normalized=False,
            norm=None,
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.ndim == 3:  # (b, 1, nw)
            waveform = waveform.squeeze(1)
        squeeze = waveform.ndim == 1
        if squeeze:
            waveform = waveform[None]
        mel = self.mel.to(waveform.device)(waveform.float()).clamp(min=1e-5).log()  # (b, c, n)
        return mel[0] if squeeze else mel


_MEL_CACHE: dict = {}


def log_mel_spectrogram(waveform: torch.Tensor, sampling_rate: int = SAMPLING_RATE) -> torch.Tensor:
    """Functional form of :class:`LogMelSpectrogram` with the default settings (cached per device)."""
    key = (sampling_rate, str(waveform.device))
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = LogMelSpectrogram(sampling_rate=sampling_rate).to(waveform.device)
    return _MEL_CACHE[key](waveform)


def num_mel_frames(num_samples: int, hop_length: int = HOP_LENGTH) -> int:
    """Frames the centred STFT gives for `num_samples` samples."""
    return num_samples // hop_length + 1


def resample(waveform: torch.Tensor, orig_sampling_rate: int, sampling_rate: int = SAMPLING_RATE) -> torch.Tensor:
    """Resample along the last axis with torchaudio's windowed-sinc filter (no-op at the same rate)."""
    if int(orig_sampling_rate) == int(sampling_rate):
        return waveform
    return torchaudio.functional.resample(waveform, int(orig_sampling_rate), int(sampling_rate))


def _to_mono(samples: torch.Tensor, require_mono: bool = False) -> torch.Tensor:
    samples = torch.as_tensor(samples, dtype=torch.float32)
    if samples.ndim == 2 and require_mono and samples.shape[0] > 1:
        raise ValueError(
            f"the audio has {samples.shape[0]} channels: give a mono recording of one voice (e.g. "
            "`ffmpeg -i voice.wav -ac 1 voice_mono.wav`)."
        )
    if samples.ndim == 2:  # (channels, samples) as torchcodec decodes
        samples = samples.mean(dim=0)
    if samples.ndim != 1:
        raise ValueError(f"audio must be 1-D (samples) or 2-D (channels, samples), got shape {tuple(samples.shape)}.")
    return samples


def load_audio(audio: AudioInput, sampling_rate: int = SAMPLING_RATE, require_mono: bool = False) -> torch.Tensor:
    """Load audio as a mono float32 waveform ``(nw,)`` at `sampling_rate`.

    Args:
        audio:
            A file path (wav, flac, mp3, ogg, m4a, … anything FFmpeg decodes, through torchcodec); a
            `(waveform, sampling_rate)` tuple; a `{"array": ..., "sampling_rate": ...}` dict (the `datasets`
            Audio form); a torchcodec `AudioDecoder` (what `datasets` 4+ returns); or a 1-D tensor / array
            already at `sampling_rate`.
        sampling_rate (`int`, *optional*, defaults to 24000):
            Rate of the returned waveform.
        require_mono (`bool`, *optional*, defaults to `False`):
            Refuse audio with several channels (a `ValueError` naming the fix) instead of averaging them.
    """
    if isinstance(audio, (str, os.PathLike)):
        path = os.fspath(audio)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"audio file {path!r} does not exist: pass the path of a wav/flac/mp3 file.")
        from torchcodec.decoders import AudioDecoder

        try:
            decoded = AudioDecoder(path).get_all_samples()
        except Exception as error:  # torchcodec raises RuntimeError/ValueError for undecodable files
            raise ValueError(f"could not decode audio file {path!r} ({error}); convert it to wav first.") from error
        return resample(_to_mono(decoded.data, require_mono), decoded.sample_rate, sampling_rate)
    if isinstance(audio, dict):
        if "array" not in audio or "sampling_rate" not in audio:
            raise ValueError("an audio dict needs the keys 'array' and 'sampling_rate' (the datasets Audio form).")
        return resample(_to_mono(torch.as_tensor(audio["array"]), require_mono), audio["sampling_rate"], sampling_rate)
    if isinstance(audio, tuple):
        if len(audio) != 2:
            raise ValueError("an audio tuple must be (waveform, sampling_rate).")
        return resample(_to_mono(torch.as_tensor(audio[0]), require_mono), audio[1], sampling_rate)
    if hasattr(audio, "get_all_samples"):  # torchcodec AudioDecoder, as `datasets` returns it
        decoded = audio.get_all_samples()
        return resample(_to_mono(decoded.data, require_mono), decoded.sample_rate, sampling_rate)
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        return _to_mono(torch.as_tensor(audio), require_mono)
    raise TypeError(
        f"unsupported audio input of type {type(audio).__name__}: pass a path, (waveform, sampling_rate), "
        "a datasets Audio dict or a 1-D waveform."
    )


def rms_normalize(waveform: torch.Tensor, target_rms: float = TARGET_RMS) -> tuple[torch.Tensor, float]:
    """Raise quiet audio to `target_rms`, as F5-TTS does for its reference voice; louder audio is left alone.

    Returns the (possibly) scaled waveform and the original RMS, to scale generated speech back by
    ``rms / target_rms`` when the reference was quieter than the target.
    """
    rms = float(torch.sqrt(torch.mean(torch.square(waveform))))
    if 0 < rms < target_rms:
        waveform = waveform * target_rms / rms
    return waveform, rms


def save_audio(path: Union[str, os.PathLike], waveform, sampling_rate: int = SAMPLING_RATE) -> None:
    """Write a mono waveform as 16-bit PCM wav (atomically: a temporary file renamed into place)."""
    import wave

    samples = torch.as_tensor(waveform, dtype=torch.float32).squeeze()
    if samples.ndim != 1:
        raise ValueError(f"save_audio writes mono audio: got shape {tuple(samples.shape)}; mix or pick a channel first.")
    samples = samples.clamp(-1, 1)
    pcm = (samples.numpy() * 32767).round().astype("<i2").tobytes()
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with wave.open(tmp, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(int(sampling_rate))
        handle.writeframes(pcm)
    os.replace(tmp, path)


__all__ = [
    "HOP_LENGTH",
    "NUM_MEL_BINS",
    "N_FFT",
    "SAMPLING_RATE",
    "TARGET_RMS",
    "WIN_LENGTH",
    "LogMelSpectrogram",
    "load_audio",
    "log_mel_spectrogram",
    "num_mel_frames",
    "resample",
    "rms_normalize",
    "save_audio",
]
