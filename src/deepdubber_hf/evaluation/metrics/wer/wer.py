"""Word error rate with the dubbing papers' normalisation, as a local `evaluate` module.

```python
import evaluate
from deepdubber_hf.evaluation.metrics import metric_path
wer = evaluate.load(metric_path("wer"))
wer.compute(predictions=["I left 2 maps."], references=["i left two maps"])   # {'wer': 0.0}
```
"""

import evaluate

from deepdubber_hf.evaluation.metrics import text_pairs_info
from deepdubber_hf.evaluation.wer import word_error_rate

_DESCRIPTION = (
    "Corpus word error rate (total edits / total reference words, jiwer) after lower-casing, spelling out "
    "numbers and removing punctuation; references empty after normalisation are skipped."
)


class DubbingWER(evaluate.Metric):
    def _info(self):
        return text_pairs_info(_DESCRIPTION, "predictions: the transcripts (str); references: the scripts (str).")

    def _compute(self, predictions, references):
        return {"wer": word_error_rate(list(references), list(predictions))}
