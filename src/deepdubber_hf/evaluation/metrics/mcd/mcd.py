"""MCD-DTW and MCD-DTW-SL (pymcd's numbers, as the dubbing papers report them), as a local `evaluate` module.

```python
import evaluate
from deepdubber_hf.evaluation.metrics import metric_path
mcd = evaluate.load(metric_path("mcd"))
mcd.compute(predictions=["generated/0.wav"], references=["ground_truth/0.wav"])   # {'mcd_dtw': ..., 'mcd_dtw_sl': ...}
```
"""

import evaluate

from deepdubber_hf.evaluation.mcd import mean_mcd
from deepdubber_hf.evaluation.metrics import text_pairs_info

_DESCRIPTION = (
    "Mel-cepstral distortion in dB after fastdtw alignment (MCD-DTW), and MCD-DTW-SL, the same times the ratio of "
    "the longer to the shorter frame count; each is the mean over clip pairs. Equal to pymcd's Calculate_MCD with "
    "MCD_mode 'dtw' / 'dtw_sl': 22050 Hz, WORLD envelope with 5 ms frames, order-13 mel-cepstrum (alpha 0.65)."
)


class MelCepstralDistortion(evaluate.Metric):
    def _info(self):
        return text_pairs_info(_DESCRIPTION, (
            "predictions: list of paths to generated audio files (str); references: list of paths to the "
            "ground-truth audio files (str), one per prediction. Any rate; audio is resampled to 22050 Hz."
        ))

    def _compute(self, predictions, references):
        return mean_mcd(list(references), list(predictions))
