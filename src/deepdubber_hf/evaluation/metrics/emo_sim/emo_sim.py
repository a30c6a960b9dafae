"""Emotion similarity (EMO-SIM) of generated against reference speech, as a local `evaluate` module.

No emotion model ships with deepdubber-hf: without `model_name_or_path` the result is an explicit "unavailable"
report, never a number.

```python
from deepdubber_hf.evaluation.metrics import load_metric
emo_sim = load_metric("emo_sim")
emo_sim.compute(predictions=["generated.wav"], references=["reference.wav"])
# {'emo_sim': None, 'per_pair': None, 'available': False, 'reason': 'no emotion encoder is configured: ...'}
emo_sim = load_metric("emo_sim", model_name_or_path="path/to/wav2vec2-emotion")   # a local checkpoint
```
"""


import evaluate

from deepdubber_hf.evaluation.emotion import emotion_similarity, load_emotion_encoder
from deepdubber_hf.evaluation.metrics import text_pairs_info

_DESCRIPTION = (
    "Mean cosine similarity between emotion embeddings of each generated clip and its reference clip, from a local "
    "transformers audio-classification emotion checkpoint (the pooled representation its classifier reads, or its "
    "class probabilities). Without a checkpoint: emo_sim=None and available=False."
)

_KWARGS_DESCRIPTION = (
    "predictions: list of generated audio file paths (str); references: list of reference audio file paths (str), "
    "one per prediction. Optional compute keywords (or `load_metric` keywords): backend ('wav2vec2'), "
    "model_name_or_path (the checkpoint folder), embedding ('pooled' or 'probabilities'), device."
)


class EmotionSimilarity(evaluate.Metric):
    """EMO-SIM with the backend chosen at load time (`backend`, `model_name_or_path`, `embedding`, `device`) or per
    `compute`.

    Args:
        backend (`str`, *optional*): `"wav2vec2"`; implied by `model_name_or_path`.
        model_name_or_path (`str`, *optional*): the emotion checkpoint folder; without it EMO-SIM is unavailable.
        embedding (`str`, *optional*, defaults to `"pooled"`): `"pooled"` or `"probabilities"`.
        device (`str`, *optional*, defaults to `"cpu"`): where the encoder runs.
    """

    def __init__(
        self,
        backend: str | None = None,
        model_name_or_path: str | None = None,
        embedding: str = "pooled",
        device: str = "cpu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backend = backend
        self.model_name_or_path = model_name_or_path
        self.embedding = embedding
        self.device = device
        self._encoders = {}

    def _info(self):
        return text_pairs_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references, backend=None, model_name_or_path=None, embedding=None, device=None):
        key = (
            backend or self.backend,
            model_name_or_path or self.model_name_or_path,
            embedding or self.embedding,
            device or self.device,
        )
        if key not in self._encoders:  # one model load per configuration, however often compute runs
            self._encoders[key] = load_emotion_encoder(*key)
        return emotion_similarity(list(predictions), list(references), encoder=self._encoders[key])
