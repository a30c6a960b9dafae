"""SyncNet and the lip-sync metrics LSE-D and LSE-C, as syncnet_python defines them, runnable offline.

LSE-D ("lip-sync error, distance") and LSE-C ("lip-sync error, confidence") are the numbers Wav2Lip popularised for
dubbed and talking-face video; both come from Chung & Zisserman's SyncNet ("Out of time: automated lip sync in the
wild", ACCV 2016 workshops) through the evaluation code of `joonson/syncnet_python`. For every window of 5 video
frames, the lip stream embeds the mouth region and the audio stream embeds the 0.2 s of MFCCs under it; the
Euclidean distances between each video embedding and the audio embeddings shifted by -vshift..+vshift frames are
averaged over the clip, and

- LSE-D = the smallest of those mean distances (lower is better),
- LSE-C = their median minus that smallest one (higher is better: how clearly one offset wins),
- offset = `vshift - argmin`, syncnet_python's sign (audio delayed by k frames gives -k).

Shape legend: ``b`` batch, ``f`` video frames (25 per second), ``s`` crop size in pixels, ``n`` MFCC frames (100 per
second, 4 per video frame), ``w`` 5-frame windows, ``d`` embedding width.

Two kinds of weights load into :class:`SyncNetModel`:

- the official `syncnet_v2.model` of syncnet_python, through :func:`convert_syncnet_state_dict`
  (`scripts/convert_syncnet_checkpoint.py`): the full-size architecture, 224x224 crops of the whole face;
- the offline default, a tiny SyncNet trained on the procedural corpus by `examples/train_syncnet.py`: smaller
  channels and 64x64 crops of the lower half of the face (the mouth). Its numbers are comparable between systems
  scored with the same checkpoint, not with published LSE values.

Preprocessing follows syncnet_python with these documented differences:

- faces: syncnet_python tracks S3FD detections; here OpenCV's Haar frontal-face cascade runs on every frame, one
  face track is kept (the face found in most frames, followed from frame to frame), gaps are interpolated and the
  boxes median-filtered over 13 frames as syncnet_python does (with edge replication instead of its zero padding).
  When no face is found in the whole clip the whole frame stands in for the face box (a warning is logged and the
  result carries `face_found=False`); pass `face_boxes` to use boxes of your own.
- audio: python_speech_features' `mfcc` (13 coefficients, 25 ms rectangular windows every 10 ms, 512-point FFT,
  26 mel filters, pre-emphasis 0.97, lifter 22, log energy as the first coefficient) is reimplemented with numpy
  and scipy on the waveform resampled to 16 kHz and scaled to 16-bit integers, as syncnet_python reads its wav;
  resampling uses torchaudio's sinc filter instead of FFmpeg's.
- video: frames are decoded with torchcodec; a video not at 25 fps is sampled at 25 fps (nearest frame) instead of
  being re-encoded with `ffmpeg -r 25`. The lip stream sees BGR pixels in 0..255, as syncnet_python's `cv2.imread`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Literal

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

logger = logging.getLogger(__name__)

SYNCNET_FPS = 25
SYNCNET_SAMPLING_RATE = 16_000
NUM_MFCC = 13
MFCC_PER_FRAME = 4  # 100 MFCC frames a second / 25 video frames a second
WINDOW_FRAMES = 5  # video frames per SyncNet window (0.2 s)
MFCC_WINDOW = WINDOW_FRAMES * MFCC_PER_FRAME  # 20 MFCC frames per window
FACE_CROP_SCALE = 0.4  # syncnet_python's --crop_scale: margin around the detected face
MEDIAN_FILTER_FRAMES = 13  # syncnet_python smooths the face track with a 13-frame median filter
PAD_VALUE = 110  # grey that syncnet_python pads frames with before cropping

# The offline default trained by examples/train_syncnet.py.
SYNCNET_TINY_CONFIG = {
    "audio_channels": (8, 24, 48, 32, 32, 64),
    "lip_channels": (12, 32, 32, 32, 32, 64),
    "fc_hidden_size": 64,
    "embedding_dim": 128,
    "crop_size": 64,
    "crop_region": "mouth",
}


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------


def _lip_stream_size(crop_size: int) -> int:
    """Side of the lip stream's feature map before its last convolution (6 for syncnet_python's 224 crops)."""
    size = (crop_size - 7) // 2 + 1  # conv 7x7, stride 2
    size = (size - 3) // 2 + 1  # max-pool 3x3, stride 2
    size = (size + 2 - 5) // 2 + 1  # conv 5x5, stride 2, padding 1
    size = (size + 2 - 3) // 2 + 1  # max-pool 3x3, stride 2, padding 1
    return (size - 3) // 2 + 1  # three 3x3 convs keep the size; max-pool 3x3, stride 2


class SyncNetModel(ModelMixin, ConfigMixin):
    r"""
    SyncNet v2, the two-stream network of syncnet_python's `SyncNetModel.S`: an audio stream over 13x20 MFCC windows
    and a lip stream over 5 stacked colour frames of the face, each ending in a 512 → 512 → `embedding_dim` fully
    connected stack. The module names and layer order are those of syncnet_python (`netcnnaud`, `netfcaud`,
    `netcnnlip`, `netfclip`), so the official `syncnet_v2.model` state dict loads 1:1 (see
    :func:`convert_syncnet_state_dict`).

    Args:
        audio_channels (`tuple[int]`, *optional*, defaults to `(64, 192, 384, 256, 256, 512)`):
            Output channels of the six convolutions of the audio stream.
        lip_channels (`tuple[int]`, *optional*, defaults to `(96, 256, 256, 256, 256, 512)`):
            Output channels of the six 3-D convolutions of the lip stream.
        fc_hidden_size (`int`, *optional*, defaults to 512):
            Width of the hidden layer of both fully connected stacks.
        embedding_dim (`int`, *optional*, defaults to 1024):
            Width of the embeddings (syncnet_python's `num_layers_in_fc_layers`).
        crop_size (`int`, *optional*, defaults to 224):
            Side of the square face crops the lip stream reads (at least 51; 224 for the official weights).
        crop_region (`str`, *optional*, defaults to `"face"`):
            What the crops hold, for the preprocessing of :func:`lse_scores`: `"face"` is syncnet_python's crop of
            the whole face with a 40 % margin (the official weights), `"mouth"` the lower half of the face box.

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf.evaluation.syncnet import SYNCNET_TINY_CONFIG, SyncNetModel
    >>> model = SyncNetModel(**SYNCNET_TINY_CONFIG).eval()
    >>> audio = model.get_audio_embeddings(torch.randn(2, 1, 13, 20))
    >>> video = model.get_video_embeddings(torch.rand(2, 3, 5, 64, 64) * 255)
    >>> audio.shape, video.shape
    (torch.Size([2, 128]), torch.Size([2, 128]))
    ```
    """

    @register_to_config
    def __init__(
        self,
        audio_channels: tuple = (64, 192, 384, 256, 256, 512),
        lip_channels: tuple = (96, 256, 256, 256, 256, 512),
        fc_hidden_size: int = 512,
        embedding_dim: int = 1024,
        crop_size: int = 224,
        crop_region: Literal["face", "mouth"] = "face",
    ):
        super().__init__()
        if len(audio_channels) != 6 or len(lip_channels) != 6:
            raise ValueError(
                f"audio_channels and lip_channels need 6 entries each (one per convolution), got "
                f"{len(audio_channels)} and {len(lip_channels)}."
            )
        if crop_region not in ("face", "mouth"):
            raise ValueError(f"crop_region must be 'face' or 'mouth', got {crop_region!r}.")
        lip_size = _lip_stream_size(crop_size)
        if lip_size < 1:
            raise ValueError(f"crop_size {crop_size} is too small for the lip stream: pass 51 or more (224 official).")
        a, v = audio_channels, lip_channels

        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, a[0], kernel_size=3, padding=1), nn.BatchNorm2d(a[0]), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=1, stride=1),  # a no-op kept so that the indices match the official weights
            nn.Conv2d(a[0], a[1], kernel_size=3, padding=1), nn.BatchNorm2d(a[1]), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=(1, 2)),
            nn.Conv2d(a[1], a[2], kernel_size=3, padding=1), nn.BatchNorm2d(a[2]), nn.ReLU(inplace=True),
            nn.Conv2d(a[2], a[3], kernel_size=3, padding=1), nn.BatchNorm2d(a[3]), nn.ReLU(inplace=True),
            nn.Conv2d(a[3], a[4], kernel_size=3, padding=1), nn.BatchNorm2d(a[4]), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(a[4], a[5], kernel_size=(5, 4)), nn.BatchNorm2d(a[5]), nn.ReLU(),
        )  # fmt: skip
        self.netfcaud = nn.Sequential(
            nn.Linear(a[5], fc_hidden_size), nn.BatchNorm1d(fc_hidden_size), nn.ReLU(),
            nn.Linear(fc_hidden_size, embedding_dim),
        )  # fmt: skip
        # syncnet_python defines the lip fc stack before the lip convolutions; the order of the state dict follows.
        self.netfclip = nn.Sequential(
            nn.Linear(v[5], fc_hidden_size), nn.BatchNorm1d(fc_hidden_size), nn.ReLU(),
            nn.Linear(fc_hidden_size, embedding_dim),
        )  # fmt: skip
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, v[0], kernel_size=(WINDOW_FRAMES, 7, 7), stride=(1, 2, 2)), nn.BatchNorm3d(v[0]),
            nn.ReLU(inplace=True), nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(v[0], v[1], kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(v[1]),
            nn.ReLU(inplace=True), nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(v[1], v[2], kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(v[2]), nn.ReLU(inplace=True),
            nn.Conv3d(v[2], v[3], kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(v[3]), nn.ReLU(inplace=True),
            nn.Conv3d(v[3], v[4], kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(v[4]), nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(v[4], v[5], kernel_size=(1, lip_size, lip_size)), nn.BatchNorm3d(v[5]), nn.ReLU(inplace=True),
        )  # fmt: skip

    def get_audio_embeddings(self, mfcc: torch.Tensor) -> torch.Tensor:
        r"""
        Args:
            mfcc (`torch.Tensor` of shape `(batch_size, 1, 13, 20)`):
                Windows of 20 MFCC frames (0.2 s), as :func:`mfcc_windows` cuts them.

        Returns:
            `torch.Tensor` of shape `(batch_size, embedding_dim)`.
        """
        if mfcc.ndim != 4 or tuple(mfcc.shape[1:]) != (1, NUM_MFCC, MFCC_WINDOW):
            raise ValueError(
                f"mfcc must have the shape (batch, 1, {NUM_MFCC}, {MFCC_WINDOW}) (windows of 0.2 s), got "
                f"{tuple(mfcc.shape)}: cut them with `mfcc_windows`."
            )
        hidden = self.netcnnaud(mfcc)  # (b, c, 1, 1)
        return self.netfcaud(hidden.flatten(1))  # (b, d)

    def get_video_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        r"""
        Args:
            pixel_values (`torch.Tensor` of shape `(batch_size, 3, 5, crop_size, crop_size)`):
                Five consecutive crops, BGR values in 0..255 (as :func:`crop_faces` gives them).

        Returns:
            `torch.Tensor` of shape `(batch_size, embedding_dim)`.
        """
        s = self.config.crop_size
        if pixel_values.ndim != 5 or tuple(pixel_values.shape[1:]) != (3, WINDOW_FRAMES, s, s):
            raise ValueError(
                f"pixel_values must have the shape (batch, 3, {WINDOW_FRAMES}, {s}, {s}) (5 crops of this model's "
                f"crop_size), got {tuple(pixel_values.shape)}: crop with `crop_faces(..., crop_size={s})`."
            )
        hidden = self.netcnnlip(pixel_values)  # (b, c, 1, 1, 1)
        return self.netfclip(hidden.flatten(1))  # (b, d)

    def forward(self, mfcc: torch.Tensor, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio and video embeddings `((b, d), (b, d))` of matching windows (see the two `get_*` methods)."""
        return self.get_audio_embeddings(mfcc), self.get_video_embeddings(pixel_values)


# ----------------------------------------------------------------------------------------------------------------
# Converting the official weights
# ----------------------------------------------------------------------------------------------------------------


def _official_tensors(official) -> dict:
    """The tensors of a loaded syncnet_python file: a whole pickled `S` module or its state dict, possibly
    wrapped (`{"state_dict": ...}`) or prefixed (`__S__.`, `module.`)."""
    if isinstance(official, nn.Module):
        official = official.state_dict()
    if isinstance(official, dict) and "state_dict" in official and isinstance(official["state_dict"], dict):
        official = official["state_dict"]
    if not isinstance(official, dict):
        raise TypeError(
            f"expected a syncnet_python state dict or model, got {type(official).__name__}: pass the content of "
            "`syncnet_v2.model`."
        )
    tensors = {}
    for key, value in official.items():
        for prefix in ("__S__.", "module."):
            key = key.removeprefix(prefix)
        tensors[key] = value
    return tensors


def syncnet_config_from_state_dict(official_state_dict) -> dict:
    """The :class:`SyncNetModel` config of a syncnet_python state dict (channels, widths and crop size read from
    the weight shapes)."""
    tensors = _official_tensors(official_state_dict)
    try:
        audio = tuple(int(tensors[f"netcnnaud.{i}.weight"].shape[0]) for i in (0, 4, 8, 11, 14, 18))
        lips = tuple(int(tensors[f"netcnnlip.{i}.weight"].shape[0]) for i in (0, 4, 8, 11, 14, 18))
        fc_hidden_size = int(tensors["netfcaud.0.weight"].shape[0])
        embedding_dim = int(tensors["netfcaud.3.weight"].shape[0])
        last_kernel = int(tensors["netcnnlip.18.weight"].shape[-1])
    except KeyError as error:
        raise ValueError(
            f"not a syncnet_python SyncNet state dict (no {error.args[0]!r}): pass `syncnet_v2.model` from "
            "joonson/syncnet_python."
        ) from error
    crop_size = next((s for s in range(51, 1024) if _lip_stream_size(s) == last_kernel), None)
    if crop_size is None:
        raise ValueError(f"the lip stream's last kernel ({last_kernel}) fits no crop size.")
    if last_kernel == 6:
        crop_size = 224  # the size syncnet_python crops to (several sizes give a 6x6 map)
    return {"audio_channels": audio, "lip_channels": lips, "fc_hidden_size": fc_hidden_size,
            "embedding_dim": embedding_dim, "crop_size": crop_size, "crop_region": "face"}  # fmt: skip


def convert_syncnet_state_dict(official_state_dict) -> dict:
    """Map a syncnet_python SyncNet (`SyncNetModel.S`) state dict, or the whole pickled model, onto
    :class:`SyncNetModel`'s keys.

    The names are the same (`netcnnaud.0.weight`, `netfclip.3.bias`, ...), so this checks the keys and shapes
    against a model of the inferred config, strips wrappers (`__S__.`, `module.`) and adds the batch-norm
    `num_batches_tracked` counters that checkpoints of older PyTorch versions lack. Unknown or missing keys raise a
    `ValueError`.

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf.evaluation.syncnet import SyncNetModel, convert_syncnet_state_dict, syncnet_config_from_state_dict
    >>> official = torch.load("syncnet_v2.model", map_location="cpu", weights_only=True)  # doctest: +SKIP
    >>> model = SyncNetModel(**syncnet_config_from_state_dict(official))  # doctest: +SKIP
    >>> model.load_state_dict(convert_syncnet_state_dict(official))  # doctest: +SKIP
    ```
    """
    tensors = _official_tensors(official_state_dict)
    reference = SyncNetModel(**syncnet_config_from_state_dict(tensors)).state_dict()
    unknown = sorted(set(tensors) - set(reference))
    if unknown:
        raise ValueError(f"the state dict has keys that SyncNet v2 has not: {unknown[:5]}; is it syncnet_v2.model?")
    converted = {}
    for key, expected in reference.items():
        if key not in tensors:
            if key.endswith("num_batches_tracked"):
                converted[key] = torch.zeros_like(expected)
                continue
            raise ValueError(f"the state dict lacks {key!r}: pass a complete syncnet_v2.model.")
        value = torch.as_tensor(tensors[key])
        if value.shape != expected.shape:
            raise ValueError(f"{key!r} has the shape {tuple(value.shape)}, SyncNet v2 expects {tuple(expected.shape)}.")
        converted[key] = value.to(expected.dtype)
    return converted


# ----------------------------------------------------------------------------------------------------------------
# Audio: MFCCs as python_speech_features computes them
# ----------------------------------------------------------------------------------------------------------------


def _mel_filterbank(num_filters: int, n_fft: int, sampling_rate: int) -> np.ndarray:
    """Triangular filters `(num_filters, n_fft // 2 + 1)` on FFT bins, python_speech_features' construction (bins
    rounded down from mel-spaced frequencies between 0 Hz and Nyquist)."""
    high_mel = 2595 * np.log10(1 + (sampling_rate / 2) / 700.0)
    mels = np.linspace(0.0, high_mel, num_filters + 2)
    bins = np.floor((n_fft + 1) * (700 * (10 ** (mels / 2595.0) - 1)) / sampling_rate)
    bank = np.zeros((num_filters, n_fft // 2 + 1))
    for j in range(num_filters):
        left, centre, right = bins[j], bins[j + 1], bins[j + 2]
        rising = np.arange(int(left), int(centre))
        bank[j, rising] = (rising - left) / (centre - left)
        falling = np.arange(int(centre), int(right))
        bank[j, falling] = (right - falling) / (right - centre)
    return bank


def compute_mfcc(waveform, sampling_rate: int = SYNCNET_SAMPLING_RATE) -> np.ndarray:
    """SyncNet's audio features: 13 MFCCs at 100 frames a second, `(13, n)`.

    Equivalent to `python_speech_features.mfcc(int16_audio, 16000)` as syncnet_python calls it: the waveform is
    resampled to 16 kHz if needed and scaled to the 16-bit integers a wav file holds.

    Args:
        waveform (`np.ndarray` or `torch.Tensor` of shape `(num_samples,)`):
            Mono audio in [-1, 1].
        sampling_rate (`int`, *optional*, defaults to 16000):
            Its rate.
    """
    from scipy.fft import dct

    signal = torch.as_tensor(waveform, dtype=torch.float32)
    if signal.ndim != 1 or signal.numel() == 0:
        raise ValueError(f"waveform must be a non-empty mono 1-D signal, got the shape {tuple(signal.shape)}.")
    if sampling_rate != SYNCNET_SAMPLING_RATE:
        from deepdubber_hf.audio import resample

        signal = resample(signal, sampling_rate, SYNCNET_SAMPLING_RATE)
    signal = np.round(np.clip(signal.double().numpy() * 32768.0, -32768, 32767))  # as the int16 wav syncnet reads
    signal = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])  # pre-emphasis

    frame_length, frame_step, n_fft = 400, 160, 512  # 25 ms every 10 ms at 16 kHz
    num_frames = 1 if len(signal) <= frame_length else 1 + math.ceil((len(signal) - frame_length) / frame_step)
    padded = np.zeros((num_frames - 1) * frame_step + frame_length)
    padded[: len(signal)] = signal
    index = np.arange(frame_length)[None, :] + frame_step * np.arange(num_frames)[:, None]
    frames = padded[index]  # (n, 400), rectangular window

    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft  # (n, 257)
    eps = np.finfo(float).eps
    energy = np.where(power.sum(axis=1) == 0, eps, power.sum(axis=1))
    filtered = power @ _mel_filterbank(26, n_fft, SYNCNET_SAMPLING_RATE).T  # (n, 26)
    filtered = np.where(filtered == 0, eps, filtered)
    cepstra = dct(np.log(filtered), type=2, axis=1, norm="ortho")[:, :NUM_MFCC]
    cepstra *= 1 + (22 / 2.0) * np.sin(np.pi * np.arange(NUM_MFCC) / 22)  # lifter 22
    cepstra[:, 0] = np.log(energy)  # appendEnergy
    return cepstra.T.astype(np.float32)  # (13, n)


def mfcc_windows(mfcc, starts) -> torch.Tensor:
    """The 0.2 s MFCC windows `(len(starts), 1, 13, 20)` under the 5-frame video windows starting at the video
    frames `starts` (4 MFCC frames per video frame, as syncnet_python cuts them)."""
    mfcc = torch.as_tensor(mfcc)
    return torch.stack([mfcc[:, MFCC_PER_FRAME * i : MFCC_PER_FRAME * i + MFCC_WINDOW] for i in starts])[:, None]


# ----------------------------------------------------------------------------------------------------------------
# Video: frames at 25 fps, one face track, crops
# ----------------------------------------------------------------------------------------------------------------


def load_frames(video) -> np.ndarray:
    """RGB frames `(f, h, w, 3)` uint8 at 25 fps.

    Args:
        video:
            A file path, encoded bytes, a `datasets` Video dict, a torchcodec `VideoDecoder` (decoded with
            :func:`deepdubber_hf.reasoner.processing_reasoner.open_video`) or frames already at 25 fps: an array or
            tensor `(f, h, w, 3)` uint8.
    """
    if isinstance(video, (np.ndarray, torch.Tensor)):
        frames = np.asarray(video)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"video frames must have the shape (frames, height, width, 3), got {frames.shape}.")
        return frames.astype(np.uint8)
    from deepdubber_hf.reasoner.processing_reasoner import open_video

    decoder = open_video(video)
    fps = decoder.metadata.average_fps or SYNCNET_FPS
    num_frames = decoder.metadata.num_frames or 0
    if num_frames == 0:
        raise ValueError("the video has no frames: pass a clip with a video stream.")
    if abs(fps - SYNCNET_FPS) < 0.01:
        data = decoder.get_frames_in_range(0, num_frames).data
    else:  # SyncNet's windows are 5 frames of 25 fps: sample the clip at 25 fps
        duration_s = num_frames / fps
        times = [t / SYNCNET_FPS for t in range(int(duration_s * SYNCNET_FPS))]
        data = decoder.get_frames_played_at(times).data
    return data.permute(0, 2, 3, 1).numpy()  # (f, h, w, 3)


def _pick_track(detections: list) -> list:
    """One face per frame (or None): start from the detection seen in most frames (a centre within half a box of
    it), then follow the nearest detection forward and backward."""
    candidates = [(i, box) for i, boxes in enumerate(detections) for box in boxes]

    def centre(box):
        return np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])

    def near(a, b):
        return np.linalg.norm(centre(a) - centre(b)) < 0.5 * max(a[2], a[3])

    def support(candidate):
        return sum(any(near(candidate[1], other) for other in boxes) for boxes in detections)

    start, anchor = max(candidates, key=lambda c: (support(c), c[1][2] * c[1][3]))
    track = [None] * len(detections)
    track[start] = anchor
    for order in (range(start + 1, len(detections)), range(start - 1, -1, -1)):
        previous = anchor
        for i in order:
            close = [box for box in detections[i] if near(previous, box)]
            if close:
                track[i] = min(close, key=lambda box: np.linalg.norm(centre(box) - centre(previous)))
                previous = track[i]
    return track


def detect_face_boxes(frames: np.ndarray, stride: int = 1) -> tuple[np.ndarray, bool]:
    """One face track over the clip with OpenCV's Haar frontal-face cascade: `(boxes, face_found)`, the boxes
    `(f, 3)` as (centre x, centre y, half size) per frame in pixels, syncnet_python's `dets` (`x`, `y`, `s`).

    Frames without a detection take boxes interpolated from their neighbours; the track is median-filtered over 13
    frames. With no face in the whole clip the whole frame is the box and `face_found` is False.

    Args:
        frames (`np.ndarray` of shape `(f, h, w, 3)`):
            RGB frames.
        stride (`int`, *optional*, defaults to 1):
            Run the detector on every `stride`-th frame only (syncnet_python: every frame); the others are
            interpolated. 5 is about as good on clips whose faces move slowly, and five times faster.
    """
    if stride < 1:
        raise ValueError(f"stride must be at least 1 frame, got {stride}.")
    import cv2
    from scipy.ndimage import median_filter

    f, height, width = frames.shape[:3]
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    scale = min(1.0, 360 / min(height, width))  # large frames: detect on a copy of at most 360 lines
    min_size = max(12, int(0.08 * min(height, width) * scale))
    detections = []
    detected_at = np.arange(0, f, stride)
    for frame in frames[detected_at]:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = cascade.detectMultiScale(cv2.equalizeHist(grey), scaleFactor=1.1, minNeighbors=3,
                                         minSize=(min_size, min_size))  # fmt: skip
        detections.append([tuple(float(v) / scale for v in box) for box in found])
    if not any(detections):
        logger.warning("No face found in the clip: the whole frame stands in for the face box.")
        whole = [width / 2, height / 2, max(width, height) / 2]
        return np.tile(np.array(whole, dtype=np.float64), (f, 1)), False
    track = _pick_track(detections)
    known = np.array([detected_at[i] for i, box in enumerate(track) if box is not None])
    boxes = np.array([[box[0] + box[2] / 2, box[1] + box[3] / 2, max(box[2], box[3]) / 2] for box in track
                      if box is not None])  # fmt: skip
    dets = np.stack([np.interp(np.arange(f), known, boxes[:, k]) for k in range(3)], axis=1)  # (f, 3)
    dets = median_filter(dets, size=(min(MEDIAN_FILTER_FRAMES, f), 1), mode="nearest")
    return dets, True


def speaker_mouth_bbox(row: dict) -> list | None:
    """The mouth box of the clip's speaker in a procedural-corpus row (`characters`, `target_speaker`), or None
    when no lips speak the line: the speaker is off screen or shown silent (a narration), or the row has no such
    columns."""
    characters, target = row.get("characters"), row.get("target_speaker")
    if not characters or target is None or target >= len(characters):
        return None
    speaker = characters[target]
    if not speaker.get("visible") or not speaker.get("talking", True):
        return None
    return characters[target].get("mouth_bbox")


def face_boxes_from_mouth(mouth_bbox, num_frames: int) -> np.ndarray:
    """Face boxes `(num_frames, 3)` (centre x, centre y, half size) whose `"mouth"` crop (the lower half of the box)
    is centred on a known mouth: for clips whose mouths are known (the procedural corpus's `characters[i]
    ["mouth_bbox"]`), where no detector is needed, and the Haar cascade misses many drawn faces.

    Args:
        mouth_bbox (`list` of 4 numbers):
            The mouth's box `[x0, y0, x1, y1]` in pixels (the largest it opens), the same in every frame.
        num_frames (`int`):
            Frames of the clip.
    """
    if len(mouth_bbox) != 4 or mouth_bbox[2] <= mouth_bbox[0] or mouth_bbox[3] <= mouth_bbox[1]:
        raise ValueError(f"mouth_bbox must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {list(mouth_bbox)}.")
    x0, y0, x1, y1 = (float(v) for v in mouth_bbox)
    # The mouth crop spans rows y..y+s and columns x-s..x+s: 1.5 mouth widths on each side, the mouth in its middle.
    half = 1.5 * max(x1 - x0, y1 - y0)
    box = [(x0 + x1) / 2, (y0 + y1) / 2 - half / 2, half]
    return np.tile(np.array(box, dtype=np.float64), (num_frames, 1))


def crop_faces(frames: np.ndarray, boxes: np.ndarray, crop_size: int,
               crop_region: Literal["face", "mouth"] = "face") -> np.ndarray:  # fmt: skip
    """Square crops `(f, crop_size, crop_size, 3)` BGR float32 in 0..255, the lip stream's input.

    Args:
        frames (`np.ndarray` of shape `(f, h, w, 3)`):
            RGB frames.
        boxes (`np.ndarray` of shape `(f, 3)`):
            Face boxes as (centre x, centre y, half size), from :func:`detect_face_boxes`.
        crop_size (`int`):
            Side of the output crops.
        crop_region (`str`, *optional*, defaults to `"face"`):
            `"face"`: syncnet_python's crop, the face with a 40 % margin, a little more below the face than above
            (`crop_video` in its `run_pipeline.py`); `"mouth"`: the lower half of the face box.
    """
    import cv2

    if crop_region not in ("face", "mouth"):
        raise ValueError(f"crop_region must be 'face' or 'mouth', got {crop_region!r}.")
    if len(frames) != len(boxes):
        raise ValueError(f"got {len(frames)} frames but {len(boxes)} face boxes: pass one box per frame.")
    crops = np.empty((len(frames), crop_size, crop_size, 3), dtype=np.float32)
    cs = FACE_CROP_SCALE
    for i, (frame, (x, y, s)) in enumerate(zip(frames, boxes)):
        s = max(float(s), 1.0)
        pad = int(s * (1 + 2 * cs))
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
        my, mx = y + pad, x + pad
        if crop_region == "face":
            patch = padded[int(my - s) : int(my + s * (1 + 2 * cs)), int(mx - s * (1 + cs)) : int(mx + s * (1 + cs))]
        else:
            patch = padded[int(my) : int(my + s), int(mx - s) : int(mx + s)]
        patch = cv2.resize(patch, (crop_size, crop_size), interpolation=cv2.INTER_AREA)
        crops[i] = patch[..., ::-1]  # RGB → BGR, the channel order syncnet_python's cv2 frames have
    return crops


# ----------------------------------------------------------------------------------------------------------------
# The scores
# ----------------------------------------------------------------------------------------------------------------


def load_syncnet(model: SyncNetModel | str | os.PathLike) -> SyncNetModel:
    """A :class:`SyncNetModel` itself, or loaded from a `save_pretrained` folder (e.g. the output of
    `examples/train_syncnet.py` or of `scripts/convert_syncnet_checkpoint.py`)."""
    if isinstance(model, SyncNetModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        if not os.path.isfile(os.path.join(model, "config.json")):
            raise FileNotFoundError(
                f"{os.fspath(model)!r} is not a SyncNet folder (no config.json): train one with "
                "examples/train_syncnet.py or convert syncnet_v2.model with scripts/convert_syncnet_checkpoint.py."
            )
        return SyncNetModel.from_pretrained(model)
    raise TypeError(f"model must be a SyncNetModel or a folder, got {type(model).__name__}.")


def _load_waveform(audio, video) -> torch.Tensor:
    """Mono 16 kHz audio from what `load_audio` takes, from encoded bytes (`{"bytes": ...}` as in the corpus), or,
    when `audio` is None, from the video file's own audio stream."""
    from torchcodec.decoders import AudioDecoder

    from deepdubber_hf.audio import load_audio, resample

    if audio is None:
        source = video.get("bytes") or video.get("path") if isinstance(video, dict) else video
        if not isinstance(source, (str, os.PathLike, bytes)):
            raise ValueError("audio is None and the video is not a file or bytes: pass the audio to score with it.")
        try:
            decoded = AudioDecoder(os.fspath(source) if isinstance(source, os.PathLike) else source).get_all_samples()
        except Exception as error:
            raise ValueError(
                f"the video has no audio stream to score ({error}): pass `audio` (a wav path or waveform)."
            ) from error
        return resample(decoded.data.float().mean(dim=0), decoded.sample_rate, SYNCNET_SAMPLING_RATE)
    if isinstance(audio, dict) and "bytes" in audio and "array" not in audio:
        decoded = AudioDecoder(audio["bytes"]).get_all_samples()
        return resample(decoded.data.float().mean(dim=0), decoded.sample_rate, SYNCNET_SAMPLING_RATE)
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        raise TypeError(
            "a bare waveform has no sampling rate: pass (waveform, sampling_rate) or {'array': ..., 'sampling_rate': ...}."
        )
    return load_audio(audio, SYNCNET_SAMPLING_RATE)


def sync_distances(video_embeddings: torch.Tensor, audio_embeddings: torch.Tensor, vshift: int) -> torch.Tensor:
    """syncnet_python's `calc_pdist`: distances `(w, 2 * vshift + 1)` between each video embedding and the audio
    embeddings `vshift` windows before to `vshift` after it; audio beyond either end is a zero embedding."""
    if video_embeddings.shape != audio_embeddings.shape:
        raise ValueError(
            f"video and audio embeddings must match, got {tuple(video_embeddings.shape)} and "
            f"{tuple(audio_embeddings.shape)}."
        )
    padded = nn.functional.pad(audio_embeddings, (0, 0, vshift, vshift))  # (w + 2 vshift, d)
    shifted = padded.unfold(0, 2 * vshift + 1, 1)  # (w, d, 2 vshift + 1)
    # F.pairwise_distance's eps, added to the difference, as syncnet_python computes it
    return torch.linalg.vector_norm(video_embeddings[:, :, None] - shifted + 1e-6, dim=1)  # (w, 2 vshift + 1)


def scores_from_distances(distances: torch.Tensor, vshift: int) -> dict:
    """LSE-D, LSE-C and the offset from the distance matrix `(w, 2 * vshift + 1)` of :func:`sync_distances`."""
    distances = torch.as_tensor(distances)
    if distances.ndim != 2 or distances.shape[1] != 2 * vshift + 1 or distances.shape[0] == 0:
        raise ValueError(
            f"distances must have the shape (windows >= 1, {2 * vshift + 1}) for vshift={vshift}, got "
            f"{tuple(distances.shape)}."
        )
    mean = distances.mean(dim=0)  # (2 vshift + 1,)
    minimum, index = torch.min(mean, dim=0)
    return {"lse_d": float(minimum), "lse_c": float(torch.median(mean) - minimum), "offset": vshift - int(index)}


@torch.no_grad()
def lse_scores(
    video,
    audio,
    model: SyncNetModel | str | os.PathLike,
    vshift: int = 15,
    batch_size: int = 20,
    face_boxes: np.ndarray | None = None,
    face_detection_stride: int = 1,
    return_distances: bool = False,
    mouth_bbox: list | None = None,
) -> dict:
    r"""LSE-D and LSE-C of a clip and the audio played with it, as syncnet_python evaluates them.

    Args:
        video:
            The clip: a file path, encoded bytes, a `datasets` Video dict, a torchcodec decoder, or RGB frames
            `(f, h, w, 3)` uint8 at 25 fps.
        audio:
            A path, `(waveform, sampling_rate)`, a `datasets` Audio dict (`array` or `bytes`), or None for the
            video file's own audio stream (a dubbed mp4).
        model ([`SyncNetModel`] or `str`):
            The SyncNet, or its folder.
        vshift (`int`, *optional*, defaults to 15):
            Largest audio shift tried, in frames each way (syncnet_python's `--vshift`; Wav2Lip's scores use 15).
        batch_size (`int`, *optional*, defaults to 20):
            Windows per forward pass.
        face_boxes (`np.ndarray` of shape `(f, 3)`, *optional*):
            Face boxes (centre x, centre y, half size) per frame, instead of the Haar face track.
        face_detection_stride (`int`, *optional*, defaults to 1):
            Detect faces on every n-th frame only (see :func:`detect_face_boxes`).
        return_distances (`bool`, *optional*, defaults to `False`):
            Also return the distance matrix `(w, 2 * vshift + 1)` under `"distances"`.
        mouth_bbox (`list`, *optional*):
            The speaker's mouth box `[x0, y0, x1, y1]` when it is known (see :func:`face_boxes_from_mouth`), instead
            of the Haar face track.

    Returns:
        `dict`: `lse_d` (mean distance at the best offset, lower is better), `lse_c` (median minus minimum of the
        mean distances, higher is better), `offset` (`vshift - argmin`, frames; audio delayed by k frames gives
        -k), `num_windows` and `face_found`.

    Example:

    ```py
    >>> from deepdubber_hf.evaluation.syncnet import lse_scores
    >>> lse_scores("dubbed.mp4", None, "runs/syncnet_tiny")  # doctest: +SKIP
    {'lse_d': 7.1, 'lse_c': 2.3, 'offset': 0, 'num_windows': 105, 'face_found': True}
    ```
    """
    # 1. Check inputs
    if not isinstance(vshift, int) or vshift < 0:
        raise ValueError(f"vshift must be a non-negative number of frames, got {vshift!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    model = load_syncnet(model)

    # 2. Audio → MFCC (100 a second), video → 25 fps frames
    waveform = _load_waveform(audio, video)
    frames = load_frames(video)
    mfcc = compute_mfcc(waveform)  # (13, n)
    # syncnet_python scores min(frames, audio / 640 samples) - 5 windows
    num_windows = min(len(frames), len(waveform) // (SYNCNET_SAMPLING_RATE // SYNCNET_FPS)) - WINDOW_FRAMES
    if num_windows < 1:
        raise ValueError(
            f"the clip is too short for SyncNet: {len(frames)} frames and {len(waveform) / SYNCNET_SAMPLING_RATE:.2f}"
            f" s of audio give no 5-frame window; pass at least {WINDOW_FRAMES + 1} frames (0.24 s) of both."
        )

    # 3. Face track → crops
    face_found = True
    if face_boxes is None and mouth_bbox is not None:
        face_boxes = face_boxes_from_mouth(mouth_bbox, len(frames))
    if face_boxes is None:
        face_boxes, face_found = detect_face_boxes(frames, face_detection_stride)
    face_boxes = np.asarray(face_boxes, dtype=np.float64)
    if face_boxes.shape != (len(frames), 3):
        raise ValueError(f"face_boxes must have the shape ({len(frames)}, 3) (x, y, half size per frame), "
                         f"got {face_boxes.shape}.")  # fmt: skip
    crops = crop_faces(frames, face_boxes, model.config.crop_size, model.config.crop_region)  # (f, s, s, 3)
    pixels = torch.from_numpy(crops).permute(3, 0, 1, 2)  # (3, f, s, s)

    # 4. Embeddings of every window
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    video_embeddings, audio_embeddings = [], []
    for start in range(0, num_windows, batch_size):
        starts = range(start, min(num_windows, start + batch_size))
        clips = torch.stack([pixels[:, i : i + WINDOW_FRAMES] for i in starts])  # (b, 3, 5, s, s)
        video_embeddings.append(model.get_video_embeddings(clips.to(device, dtype)).float().cpu())
        audio_embeddings.append(model.get_audio_embeddings(mfcc_windows(mfcc, starts).to(device, dtype)).float().cpu())
    model.train(was_training)

    # 5. Distances at every offset → the scores
    distances = sync_distances(torch.cat(video_embeddings), torch.cat(audio_embeddings), vshift)  # (w, 2 vshift + 1)
    result = {**scores_from_distances(distances, vshift), "num_windows": num_windows, "face_found": face_found}
    if return_distances:
        result["distances"] = distances.numpy()
    return result


def lse_for_files(video_path, audio_path_or_array=None, model: SyncNetModel | str | os.PathLike = None,
                  vshift: int = 15, **kwargs) -> dict:  # fmt: skip
    """:func:`lse_scores` of a video file and an audio file or waveform (`(waveform, sampling_rate)`); without
    audio, the video file's own soundtrack (a dubbed mp4) is scored."""
    if model is None:
        raise ValueError(
            "pass model: a SyncNet folder (examples/train_syncnet.py, or scripts/convert_syncnet_checkpoint.py for "
            "the official syncnet_v2.model)."
        )
    if not os.path.isfile(video_path):
        raise FileNotFoundError(f"video file {os.fspath(video_path)!r} not found; check the path.")
    return lse_scores(os.fspath(video_path), audio_path_or_array, model, vshift=vshift, **kwargs)


def lse_for_batch(items: list, model: SyncNetModel | str | os.PathLike, vshift: int = 15, **kwargs) -> dict:
    """LSE over many clips, averaged as Wav2Lip reports them (the mean of the per-clip LSE-D and LSE-C).

    Args:
        items (`list`):
            Dubbed videos with their soundtrack (paths), or `(video, audio)` pairs.
        model ([`SyncNetModel`] or `str`):
            The SyncNet, or its folder (loaded once).

    Returns:
        `dict`: `lse_d`, `lse_c` (means), `num_clips` and `per_clip` (each clip's :func:`lse_scores`).
    """
    if not items:
        raise ValueError("items is empty: pass at least one video (or (video, audio) pair).")
    model = load_syncnet(model)
    per_clip = []
    for item in items:
        video, audio = item if isinstance(item, (tuple, list)) else (item, None)
        per_clip.append(lse_scores(video, audio, model, vshift=vshift, **kwargs))
    return {
        "lse_d": float(np.mean([r["lse_d"] for r in per_clip])),
        "lse_c": float(np.mean([r["lse_c"] for r in per_clip])),
        "num_clips": len(per_clip),
        "per_clip": per_clip,
    }


__all__ = [
    "SYNCNET_FPS",
    "SYNCNET_SAMPLING_RATE",
    "SYNCNET_TINY_CONFIG",
    "SyncNetModel",
    "compute_mfcc",
    "convert_syncnet_state_dict",
    "crop_faces",
    "detect_face_boxes",
    "face_boxes_from_mouth",
    "load_frames",
    "load_syncnet",
    "lse_for_batch",
    "lse_for_files",
    "lse_scores",
    "mfcc_windows",
    "scores_from_distances",
    "speaker_mouth_bbox",
    "sync_distances",
    "syncnet_config_from_state_dict",
]
