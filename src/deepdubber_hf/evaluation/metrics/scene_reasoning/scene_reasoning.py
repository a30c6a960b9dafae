"""The reasoner's scores (Tables 1-3 of the paper) as a local `evaluate` module: scene-type accuracy, the recall of
dialogue (A), monologue (B) and narration (C) and their mean, the speaker attributes' accuracies and the share of
well-formed answers. The numbers are those of `deepdubber_hf.evaluation.reasoning.reasoning_metrics`, which
`examples/evaluate_reasoning.py` and `examples/evaluate_dubbing.py` report.

```python
from deepdubber_hf.evaluation.metrics import load_metric
scores = load_metric("scene_reasoning")
scores.compute(predictions=["<SUMMARY>...</SUMMARY>...<CONCLUSION>...</CONCLUSION>"],
               references=["scene type: monologue; speakers: 1; gender: female; age: young; emotion: happy"])
```
"""

import evaluate

from deepdubber_hf.evaluation.metrics import text_pairs_info
from deepdubber_hf.evaluation.reasoning import reasoning_metrics
from deepdubber_hf.reasoner.cot import parse_conclusion
from deepdubber_hf.reasoner.generation import parse_response

_DESCRIPTION = (
    "Scene-type accuracy, per-class and average recall (dialogue A, monologue B, narration C), speaker gender / age / "
    "emotion accuracy and the share of readable answers, from the reasoner's responses and the true conclusions."
)
_KWARGS_DESCRIPTION = (
    "predictions: the reasoner's responses (str), four-section CoT (mode='cot', the default) or direct answers "
    "(mode='qa'); an unreadable response counts as wrong. references: the true conclusions as text, e.g. "
    "'scene type: dialogue; speakers: 2; gender: male; age: adult; emotion: angry'."
)


class SceneReasoning(evaluate.Metric):
    def _info(self):
        return text_pairs_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references, mode: str = "cot"):
        truths = []
        for index, text in enumerate(references):
            truth = parse_conclusion(text)
            if not truth:
                raise ValueError(f"references[{index}] {text!r} is not a conclusion ({truth.detail}): write it as "
                                 "'scene type: ...; speakers: ...; gender: ...; age: ...; emotion: ...'.")
            truths.append(truth)
        return reasoning_metrics([parse_response(text, mode) for text in predictions], truths)
