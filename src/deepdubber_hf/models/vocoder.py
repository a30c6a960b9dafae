"""The Vocos vocoder (log-mel → waveform) as a diffusers component.

Shape legend: ``b`` batch, ``c`` mel channels (100), ``n`` mel frames, ``nw`` waveform samples
(``(n - 1) * hop_length`` with centred frames), ``d`` width.

The submodules are Vocos' own `VocosBackbone` and `ISTFTHead`, so the state dict is exactly the official
`charactr/vocos-mel-24khz` checkpoint's minus its ``feature_extractor.*`` keys (the mel transform, which lives in
:mod:`deepdubber_hf.audio`), and the output is bit-identical to `vocos.Vocos.decode`.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
import yaml
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import logging
from vocos.heads import ISTFTHead
from vocos.models import VocosBackbone

logger = logging.get_logger(__name__)

_FEATURE_EXTRACTOR_CLASS = "vocos.feature_extractors.MelSpectrogramFeatures"
_BACKBONE_CLASS = "vocos.models.VocosBackbone"
_HEAD_CLASS = "vocos.heads.ISTFTHead"
_VOCOS_DOWNLOAD_HINT = (
    "download the official vocoder with `huggingface-cli download charactr/vocos-mel-24khz --local-dir <folder>`"
)


def _batched_mel(mel: torch.Tensor, num_mel_bins: int) -> tuple[torch.Tensor, bool]:
    """A vocoder's input as `(b, c, n)`, and whether it came unbatched; a clear error for any other shape."""
    if mel.ndim not in (2, 3) or mel.shape[-2] != num_mel_bins:
        raise ValueError(
            f"mel must have shape (batch_size, {num_mel_bins}, num_frames) or ({num_mel_bins}, num_frames), got "
            f"{tuple(mel.shape)}; a (batch_size, num_frames, {num_mel_bins}) mel needs `mel.transpose(1, 2)` first."
        )
    return (mel[None], True) if mel.ndim == 2 else (mel, False)


class VocosVocoder(ModelMixin, ConfigMixin):
    r"""
    Vocos (Siuzdak, 2023): a ConvNeXt backbone predicts STFT magnitude and phase per mel frame, an inverse STFT
    turns them into a waveform. This is the vocoder F5-TTS uses.

    Args:
        num_mel_bins (`int`, *optional*, defaults to 100):
            Mel channels of the input (`input_channels` in Vocos).
        hidden_size (`int`, *optional*, defaults to 512):
            Width of the ConvNeXt backbone (`dim` in Vocos).
        intermediate_size (`int`, *optional*, defaults to 1536):
            Inner width of each ConvNeXt block's MLP (`intermediate_dim` in Vocos).
        num_layers (`int`, *optional*, defaults to 8):
            Number of ConvNeXt blocks.
        n_fft (`int`, *optional*, defaults to 1024):
            FFT size (and window length) of the inverse STFT.
        hop_length (`int`, *optional*, defaults to 256):
            Samples per mel frame; must match the hop of the mel spectrogram.
        padding (`str`, *optional*, defaults to `"center"`):
            Inverse-STFT padding, `"center"` (torch.istft) or `"same"`; must match how the mel was framed.
        sampling_rate (`int`, *optional*, defaults to 24000):
            Rate of the output waveform (informational: the network itself is rate-agnostic).

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf.models import VocosVocoder

    >>> vocoder = VocosVocoder(hidden_size=32, intermediate_size=64, num_layers=2)
    >>> vocoder(torch.randn(1, 100, 50)).shape
    torch.Size([1, 12544])
    ```
    """

    @register_to_config
    def __init__(
        self,
        num_mel_bins: int = 100,
        hidden_size: int = 512,
        intermediate_size: int = 1536,
        num_layers: int = 8,
        n_fft: int = 1024,
        hop_length: int = 256,
        padding: Literal["center", "same"] = "center",
        sampling_rate: int = 24000,
    ):
        super().__init__()
        if padding not in ("center", "same"):
            raise ValueError(f"padding must be 'center' or 'same', got {padding!r}.")
        self.backbone = VocosBackbone(
            input_channels=num_mel_bins, dim=hidden_size, intermediate_dim=intermediate_size, num_layers=num_layers
        )
        self.head = ISTFTHead(dim=hidden_size, n_fft=n_fft, hop_length=hop_length, padding=padding)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """
        Args:
            mel (`torch.Tensor` of shape `(batch_size, num_mel_bins, num_frames)` or `(num_mel_bins, num_frames)`):
                Natural-log magnitude mel spectrogram, as :class:`~deepdubber_hf.audio.LogMelSpectrogram` computes
                it. Note the channel axis comes before time (F5-TTS' transformer outputs `(b, n, c)`).

        Returns:
            `torch.Tensor` of shape `(batch_size, num_samples)`, or `(num_samples,)` for an unbatched `mel`.
        """
        mel, squeeze = _batched_mel(mel, self.config.num_mel_bins)
        hidden_states = self.backbone(mel.to(self.dtype))  # (b, n, d)
        waveform = self.head(hidden_states)  # (b, nw)
        return waveform[0] if squeeze else waveform

    def decode(self, mel: torch.Tensor) -> torch.Tensor:
        """Alias of `forward`, named like `vocos.Vocos.decode` (goes through `__call__`, so hooks still run)."""
        return self(mel)

    @classmethod
    def from_vocos_checkpoint(cls, folder: str | os.PathLike) -> VocosVocoder:
        r"""
        Load an original Vocos checkpoint folder, e.g. a local copy of `charactr/vocos-mel-24khz`.

        Args:
            folder (`str` or `os.PathLike`):
                Folder holding `config.yaml` (Vocos' `from_hparams` format: `feature_extractor`, `backbone` and
                `head`, each a `class_path` and `init_args`) and `pytorch_model.bin` (the state dict of
                `vocos.Vocos`). Only `MelSpectrogramFeatures` + `VocosBackbone` + `ISTFTHead` checkpoints are
                supported.

        Returns:
            [`VocosVocoder`] in eval mode, on the CPU, in float32.

        Example:

        ```py
        >>> from deepdubber_hf.models import VocosVocoder

        >>> # huggingface-cli download charactr/vocos-mel-24khz --local-dir vocos-mel-24khz
        >>> vocoder = VocosVocoder.from_vocos_checkpoint("vocos-mel-24khz")  # doctest: +SKIP
        >>> vocoder.save_pretrained("my-pipeline/vocoder")  # doctest: +SKIP
        ```
        """
        folder = os.fspath(folder)
        config_path = os.path.join(folder, "config.yaml")
        weights_path = os.path.join(folder, "pytorch_model.bin")
        for path in (config_path, weights_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path!r} does not exist: {_VOCOS_DOWNLOAD_HINT} and pass that folder.")

        with open(config_path, encoding="utf-8") as handle:
            hparams = yaml.safe_load(handle)
        config = _config_from_vocos_hparams(hparams, config_path)

        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
        if not isinstance(state_dict, dict):
            raise TypeError(f"{weights_path!r} must hold a state dict (torch.save(vocos.state_dict())).")
        # The mel transform's window and filter bank are not parameters of the vocoder (see deepdubber_hf.audio).
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith("feature_extractor.")}

        model = cls(**config)
        expected, found = set(model.state_dict()), set(state_dict)
        if expected != found:
            raise ValueError(
                f"{weights_path!r} does not match {config_path!r}: missing keys {sorted(expected - found)[:10]}, "
                f"unexpected keys {sorted(found - expected)[:10]}; check that both files come from the same "
                "checkpoint."
            )
        model.load_state_dict(state_dict, strict=True)
        return model.eval()


def _config_from_vocos_hparams(hparams, config_path: str) -> dict:
    """Vocos `config.yaml` → `VocosVocoder` config, refusing what this class cannot represent."""
    if not isinstance(hparams, dict) or not all(key in hparams for key in ("feature_extractor", "backbone", "head")):
        raise ValueError(
            f"{config_path!r} is not a Vocos config: it needs the sections feature_extractor, backbone and head "
            f"(each with class_path and init_args); {_VOCOS_DOWNLOAD_HINT}."
        )
    sections = {}
    for name, class_path in (
        ("feature_extractor", _FEATURE_EXTRACTOR_CLASS),
        ("backbone", _BACKBONE_CLASS),
        ("head", _HEAD_CLASS),
    ):
        section = hparams[name]
        found = section.get("class_path") if isinstance(section, dict) else None
        if found != class_path:
            raise ValueError(
                f"{config_path!r}: {name}.class_path is {found!r}, but VocosVocoder only supports {class_path} "
                "(the mel Vocos, e.g. charactr/vocos-mel-24khz); EnCodec or IMDCT Vocos checkpoints need "
                "the vocos package itself."
            )
        sections[name] = dict(section.get("init_args") or {})

    # Defaults are the Vocos classes' own, for keys a config leaves out.
    features = {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"}
    features.update(sections["feature_extractor"])
    backbone = {"layer_scale_init_value": None, "adanorm_num_embeddings": None, **sections["backbone"]}
    head = {"padding": "same", **sections["head"]}

    for name, args, required in (
        ("backbone", backbone, ("input_channels", "dim", "intermediate_dim", "num_layers")),
        ("head", head, ("dim", "n_fft", "hop_length")),
    ):
        missing = [key for key in required if key not in args]
        if missing:
            raise ValueError(f"{config_path!r}: {name}.init_args lacks {missing}; add them as in vocos-mel-24khz.")
    if backbone["adanorm_num_embeddings"] is not None:
        raise ValueError(
            f"{config_path!r}: backbone.init_args.adanorm_num_embeddings is set (a bandwidth-conditioned EnCodec "
            "Vocos); VocosVocoder only supports the unconditional mel Vocos."
        )
    mismatches = [
        (what, left, right)
        for what, left, right in (
            ("feature_extractor.n_mels vs backbone.input_channels", features["n_mels"], backbone["input_channels"]),
            ("backbone.dim vs head.dim", backbone["dim"], head["dim"]),
            ("feature_extractor.hop_length vs head.hop_length", features["hop_length"], head["hop_length"]),
            ("feature_extractor.padding vs head.padding", features["padding"], head["padding"]),
        )
        if left != right
    ]
    if mismatches:
        raise ValueError(f"{config_path!r} is inconsistent: {mismatches}; fix the init_args so they agree.")

    return {
        "num_mel_bins": backbone["input_channels"],
        "hidden_size": backbone["dim"],
        "intermediate_size": backbone["intermediate_dim"],
        "num_layers": backbone["num_layers"],
        "n_fft": head["n_fft"],
        "hop_length": head["hop_length"],
        "padding": head["padding"],
        "sampling_rate": features["sample_rate"],
    }



class GriffinLimVocoder(ModelMixin, ConfigMixin):
    r"""
    A vocoder with nothing to train: the log-mel is mapped back to a linear magnitude spectrogram by non-negative
    least squares against the mel filter bank, then Griffin-Lim (with momentum, Perraudin et al. 2013) estimates a
    phase for it. Same input and output as [`VocosVocoder`], so a pipeline can hold either; it sounds rougher than
    a trained Vocos but costs no training and no weights, which is why the embedded default may use it (see the
    model card for the measured choice).

    Args:
        num_mel_bins (`int`, *optional*, defaults to 100):
            Mel channels of the input.
        n_fft (`int`, *optional*, defaults to 1024):
            FFT size (and window length) of the mel spectrogram.
        hop_length (`int`, *optional*, defaults to 256):
            Samples per mel frame.
        sampling_rate (`int`, *optional*, defaults to 24000):
            Rate of the mel spectrogram's audio and of the output.
        num_iterations (`int`, *optional*, defaults to 32):
            Griffin-Lim iterations.
        momentum (`float`, *optional*, defaults to 0.99):
            The fast Griffin-Lim momentum (0 gives the original algorithm).

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf.models import GriffinLimVocoder

    >>> GriffinLimVocoder(num_iterations=2)(torch.randn(1, 100, 50)).shape
    torch.Size([1, 12544])
    ```
    """

    @register_to_config
    def __init__(
        self,
        num_mel_bins: int = 100,
        n_fft: int = 1024,
        hop_length: int = 256,
        sampling_rate: int = 24000,
        num_iterations: int = 32,
        momentum: float = 0.99,
    ):
        super().__init__()
        import torchaudio

        # The filter bank of deepdubber_hf.audio.LogMelSpectrogram (torchaudio's HTK mel scale, no norm).
        filters = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, 0.0, sampling_rate / 2, num_mel_bins, sampling_rate, norm=None, mel_scale="htk"
        )  # (n_fft // 2 + 1, c)
        # Fixed by the config, so computed once: the start (pseudo-inverse), the normal equations and the step of
        # the projected gradient descent in `magnitudes`.
        gram = filters @ filters.T  # (f, f)
        self.register_buffer("mel_filters", filters, persistent=False)
        self.register_buffer("pseudo_inverse", torch.linalg.pinv(filters.T), persistent=False)  # (f, c)
        self.register_buffer("gram", gram, persistent=False)
        self.register_buffer("step_size", 1.0 / torch.linalg.matrix_norm(gram, ord=2), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        # Something to save, so that save_pretrained / from_pretrained round-trip like any other component.
        self.register_buffer("format_version", torch.ones(1), persistent=True)

    def magnitudes(self, mel: torch.Tensor, num_steps: int = 100) -> torch.Tensor:
        """Log-mel `(b, c, n)` → linear magnitudes `(b, n_fft // 2 + 1, n)`: projected gradient descent on
        ||F^T s - m||^2 with s >= 0, started from the pseudo-inverse (clamped)."""
        target = mel.float().exp()  # (b, c, n)
        spec = (self.pseudo_inverse @ target).clamp(min=0)  # (b, f, n)
        rhs = self.mel_filters @ target  # (b, f, n)
        for _ in range(num_steps):
            spec = (spec - self.step_size * (self.gram @ spec - rhs)).clamp(min=0)
        return spec

    def forward(self, mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """
        Args:
            mel (`torch.Tensor` of shape `(batch_size, num_mel_bins, num_frames)` or `(num_mel_bins, num_frames)`):
                Natural-log magnitude mel spectrogram.
            generator (`torch.Generator`, *optional*):
                For the random initial phase (by default a fixed seed, so the output is deterministic).

        Returns:
            `torch.Tensor` of shape `(batch_size, num_samples)`, or `(num_samples,)` for an unbatched `mel`.
        """
        mel, squeeze = _batched_mel(mel, self.config.num_mel_bins)
        n_fft, hop = self.config.n_fft, self.config.hop_length
        magnitude = self.magnitudes(mel.to(self.window.device))  # (b, f, n)
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        phase = torch.rand(magnitude.shape, generator=generator) * 2 * torch.pi
        angles = torch.polar(torch.ones_like(magnitude), phase.to(magnitude.device))
        num_samples = (magnitude.shape[-1] - 1) * hop

        def istft(spec):
            return torch.istft(spec, n_fft, hop, n_fft, self.window, center=True, length=num_samples)

        previous = torch.zeros_like(angles)
        for _ in range(self.config.num_iterations):
            waveform = istft(magnitude * angles)
            rebuilt = torch.stft(waveform, n_fft, hop, n_fft, self.window, center=True, return_complex=True)
            angles = rebuilt - self.config.momentum / (1 + self.config.momentum) * previous
            previous = rebuilt
            angles = angles / angles.abs().clamp(min=1e-16)
        waveform = istft(magnitude * angles).to(mel.dtype)
        return waveform[0] if squeeze else waveform

    def decode(self, mel: torch.Tensor) -> torch.Tensor:
        """Alias of `forward`, like [`VocosVocoder.decode`]."""
        return self(mel)


def load_vocoder(name_or_path: str | os.PathLike) -> VocosVocoder | GriffinLimVocoder:
    """
    A vocoder by name or folder: `"griffin_lim"` (no weights), a saved [`VocosVocoder`] / [`GriffinLimVocoder`]
    folder or a pipeline folder holding one in `vocoder/`, or the official Vocos layout (config.yaml + weights).
    """
    path = os.fspath(name_or_path)
    if path == "griffin_lim":
        return GriffinLimVocoder()
    if os.path.isfile(os.path.join(path, "config.yaml")):
        return VocosVocoder.from_vocos_checkpoint(path)
    subfolder = "vocoder" if os.path.isdir(os.path.join(path, "vocoder")) else None
    config = VocosVocoder.load_config(path, subfolder=subfolder)
    cls = GriffinLimVocoder if config.get("_class_name") == GriffinLimVocoder.__name__ else VocosVocoder
    return cls.from_pretrained(path, subfolder=subfolder)


__all__ = ["GriffinLimVocoder", "VocosVocoder", "load_vocoder"]
