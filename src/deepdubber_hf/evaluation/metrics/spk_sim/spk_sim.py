"""Speaker similarity (SPK-SIM) of generated against reference speech, as a local `evaluate` module.

```python
from deepdubber_hf.evaluation.metrics import load_metric
spk_sim = load_metric("spk_sim")                                   # GE2E (resemblyzer), offline
spk_sim.compute(predictions=["generated.wav"], references=["reference.wav"])
# {'spk_sim': 0.93..., 'per_pair': [0.93...], 'num_pairs': 1, 'encoder': 'GE2E (resemblyzer)'}
spk_sim = load_metric("spk_sim", backend="wavlm", model_name_or_path="path/to/wavlm-base-plus-sv")
```
"""


import evaluate

from deepdubber_hf.evaluation.metrics import text_pairs_info
from deepdubber_hf.evaluation.speaker import load_speaker_encoder, speaker_similarity

_DESCRIPTION = (
    "Mean cosine similarity between speaker embeddings of each generated clip and its reference clip: GE2E d-vectors "
    "(resemblyzer, StyleDubber's SPK-SIM; in [0, 1]) by default, or WavLM x-vectors from a local WavLMForXVector "
    "checkpoint (in [-1, 1])."
)

_KWARGS_DESCRIPTION = (
    "predictions: list of generated audio file paths (str); references: list of reference audio file paths (str), "
    "one per prediction. Optional compute keywords (or `load_metric` keywords): backend ('ge2e' or 'wavlm'), "
    "model_name_or_path (the WavLM checkpoint folder, or a resemblyzer .pt for 'ge2e'), device."
)


class SpeakerSimilarity(evaluate.Metric):
    """SPK-SIM with the backend chosen at load time (`backend`, `model_name_or_path`, `device`) or per `compute`.

    Args:
        backend (`str`, *optional*, defaults to `"ge2e"`): `"ge2e"` or `"wavlm"`.
        model_name_or_path (`str`, *optional*): the WavLM checkpoint folder (or a resemblyzer `.pt` for GE2E).
        device (`str`, *optional*, defaults to `"cpu"`): where the encoder runs.
    """

    def __init__(self, backend: str = "ge2e", model_name_or_path: str | None = None, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.backend = backend
        self.model_name_or_path = model_name_or_path
        self.device = device
        self._encoders = {}

    def _info(self):
        return text_pairs_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references, backend=None, model_name_or_path=None, device=None):
        key = (backend or self.backend, model_name_or_path or self.model_name_or_path, device or self.device)
        if key not in self._encoders:  # one model load per configuration, however often compute runs
            self._encoders[key] = load_speaker_encoder(*key)
        return speaker_similarity(list(predictions), list(references), encoder=self._encoders[key])
