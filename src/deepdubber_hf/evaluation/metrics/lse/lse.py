"""Lip-sync error LSE-D / LSE-C (syncnet_python's SyncNet evaluation, as Wav2Lip reports it), as a local `evaluate`
module.

```python
from deepdubber_hf.evaluation.metrics import load_metric
lse = load_metric("lse", model_name_or_path="runs/syncnet_tiny")   # examples/train_syncnet.py, or a converted
lse.compute(predictions=["dubbed.mp4"])                            # syncnet_v2.model; mp4s with their soundtrack
# {'lse_d': 7.1..., 'lse_c': 2.3..., 'num_clips': 1, 'per_clip': [...]}
lse.compute(predictions=["silent.mp4"], audio=["speech.wav"])  # or a video and the audio to score with it
```
"""

import evaluate

from deepdubber_hf.evaluation.metrics import text_pairs_info
from deepdubber_hf.evaluation.syncnet import load_syncnet, lse_for_batch

_DESCRIPTION = (
    "LSE-D (mean SyncNet embedding distance at the best audio offset, lower is better) and LSE-C (median minus "
    "minimum of the mean distances over offsets -vshift..+vshift, higher is better), averaged over clips, as "
    "syncnet_python computes them; faces from OpenCV's Haar cascade."
)

_KWARGS_DESCRIPTION = (
    "predictions: list of video file paths (str), dubbed mp4s with their soundtrack. Keywords: audio (per compute, "
    "optional): list of audio file paths (str), one per video, scored instead of the videos' own soundtrack; at load "
    "time or per compute: model_name_or_path (a SyncNetModel folder, required), vshift (frames, default 15), "
    "face_detection_stride (default 1)."
)


class LipSyncError(evaluate.Metric):
    """LSE-D / LSE-C with the SyncNet chosen at load time (`model_name_or_path`) or per `compute`.

    Args:
        model_name_or_path (`str`, *optional*): a `SyncNetModel` folder.
        vshift (`int`, *optional*, defaults to 15): largest audio offset tried, in frames each way.
        face_detection_stride (`int`, *optional*, defaults to 1): run the face detector on every n-th frame.
    """

    def __init__(self, model_name_or_path: str | None = None, vshift: int = 15, face_detection_stride: int = 1,
                 **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.model_name_or_path = model_name_or_path
        self.vshift = vshift
        self.face_detection_stride = face_detection_stride
        self._models = {}

    def _info(self):
        # no references: the audio of each video is its soundtrack, or the `audio` keyword's file
        return text_pairs_info(_DESCRIPTION, _KWARGS_DESCRIPTION, references=False)

    def _compute(self, predictions, audio=None, model_name_or_path=None, vshift=None,
                 face_detection_stride=None):  # fmt: skip
        path = model_name_or_path or self.model_name_or_path
        if path is None:
            raise ValueError(
                "LSE needs a SyncNet: pass model_name_or_path (the output of examples/train_syncnet.py, or of "
                "scripts/convert_syncnet_checkpoint.py for the official syncnet_v2.model)."
            )
        if path not in self._models:  # one model load per folder, however often compute runs
            self._models[path] = load_syncnet(path)
        if audio is not None and len(audio) != len(predictions):
            raise ValueError(f"got {len(predictions)} videos but {len(audio)} audio files: pass one per video.")
        items = list(zip(predictions, audio)) if audio is not None else list(predictions)
        return lse_for_batch(items, self._models[path], vshift=self.vshift if vshift is None else vshift,
                             face_detection_stride=face_detection_stride or self.face_detection_stride)  # fmt: skip
