"""Emotion similarity (EMO-SIM) of the dubbing papers: the cosine between an emotion embedding of the generated speech
and one of the reference (ground-truth) speech, averaged over the pairs.

No emotion model ships with the project or its dependencies, and none may be downloaded at run time, so the backend
is pluggable: a transformers audio-classification checkpoint the user has locally (`Wav2Vec2EmotionEncoder`), or any
object with `embed`, `sampling_rate` and `name` (see `EmotionEncoder`). Without one, :func:`emotion_similarity`
returns an explicit "unavailable" report and no number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from transformers.utils import logging

from deepdubber_hf.audio import AudioInput
from deepdubber_hf.evaluation.speaker import UtteranceEncoder, _check_pairs, _pairwise_cosines

logger = logging.get_logger(__name__)

EMBEDDING_TYPES = ("pooled", "probabilities")
# No speech-emotion model ships with a PyPI package, so none can be loaded offline by default.
UNAVAILABLE_REASON = (
    "no speech-emotion model was configured: pass the folder of a transformers audio-classification emotion "
    "checkpoint (e.g. a wav2vec2 speech-emotion-recognition model saved locally); none ships offline"
)


class EmotionEncoder(UtteranceEncoder):
    """Base of the emotion-embedding backends: audio → one fixed-size embedding per utterance (see
    [`~deepdubber_hf.evaluation.speaker.UtteranceEncoder`])."""

    sampling_rate: int = 16_000
    name: str = "emotion encoder"
    kind: str = "emotion"


class Wav2Vec2EmotionEncoder(EmotionEncoder):
    """Emotion embeddings from a transformers audio-classification checkpoint (e.g. a wav2vec2 emotion recogniser).

    Any `AutoModelForAudioClassification` model works (wav2vec2, HuBERT, WavLM, … `ForSequenceClassification`).
    The embedding is, by default, the pooled utterance representation the classification head reads (the input of
    `model.classifier`: for wav2vec2 the mean over frames of the projected hidden states). It is chosen over the class
    probabilities because EMO-SIM should compare how an emotion is expressed, not only which label wins: the
    probabilities collapse each clip onto a handful of categories (often 4 to 8), saturate once the classifier is
    confident, and so score two differently delivered "angry" lines as identical, while the pooled representation
    keeps intensity and nuance, as the emotion2vec features used for EMO-SIM elsewhere do. The probabilities remain
    available (`embedding="probabilities"`) for a label-level comparison that is comparable across checkpoints.

    Args:
        model_name_or_path (`str`):
            A folder holding the classification checkpoint and its `preprocessor_config.json`, or a Hub id already in
            the local cache (nothing is downloaded offline).
        embedding (`str`, *optional*, defaults to `"pooled"`):
            `"pooled"` (the classifier's input, see above) or `"probabilities"` (the softmax over the emotion labels).
        device (`str`, *optional*, defaults to `"cpu"`):
            Where the model runs.
    """

    def __init__(
        self,
        model_name_or_path: str,
        embedding: Literal["pooled", "probabilities"] = "pooled",
        device: str = "cpu",
    ):
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        if embedding not in EMBEDDING_TYPES:
            raise ValueError(f"unknown emotion embedding {embedding!r}: choose 'pooled' or 'probabilities'.")
        try:
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(model_name_or_path)
            model, loading_info = AutoModelForAudioClassification.from_pretrained(
                model_name_or_path, output_loading_info=True
            )
        except OSError as error:
            raise OSError(
                f"could not load the emotion model {model_name_or_path!r} ({error}); pass a local folder with an "
                "audio-classification checkpoint and its preprocessor_config.json (nothing is downloaded offline)."
            ) from error
        # A checkpoint without a trained head (a bare wav2vec2, an x-vector model) would load with a randomly
        # initialised projector and classifier, and its "emotion embeddings" would be noise.
        missing = sorted(loading_info["missing_keys"])
        if missing:
            raise ValueError(
                f"{model_name_or_path!r} is not a trained audio-classification checkpoint: {', '.join(missing[:4])}"
                f"{' …' if len(missing) > 4 else ''} would be randomly initialised. Pass a fine-tuned "
                "emotion-recognition model."
            )
        self.model = model.to(device).eval()
        if embedding == "pooled" and not isinstance(getattr(self.model, "classifier", None), torch.nn.Module):
            raise ValueError(
                f"{type(self.model).__name__} has no `classifier` layer whose input could be read as the pooled "
                "embedding: use embedding='probabilities'."
            )
        self.embedding = embedding
        self.device = device
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.name = f"{type(self.model).__name__} {embedding} ({model_name_or_path})"

    @torch.no_grad()
    def embed_waveform(self, waveform: torch.Tensor) -> np.ndarray:
        inputs = self.feature_extractor(waveform.numpy(), sampling_rate=self.sampling_rate, return_tensors="pt")
        # One unpadded clip: its attention mask would be all ones, which is the same as none.
        inputs = {key: value.to(self.device) for key, value in inputs.items() if key != "attention_mask"}
        # The pooled representation is read as the classifier's input, so no architecture's pooling is re-implemented.
        captured = {}
        hook = None
        if self.embedding == "pooled":
            hook = self.model.classifier.register_forward_pre_hook(
                lambda module, args: captured.__setitem__("pooled", args[0])
            )
        try:
            logits = self.model(**inputs).logits  # (1, num_labels)
        finally:
            if hook is not None:
                hook.remove()
        if self.embedding == "probabilities":
            return logits[0].float().softmax(dim=-1).cpu().numpy()
        pooled = captured["pooled"]
        if pooled.ndim != 2 or pooled.shape[0] != 1:
            raise ValueError(
                f"{type(self.model).__name__}'s classifier reads a tensor of shape {tuple(pooled.shape)}, not one "
                "pooled vector per clip: use embedding='probabilities'."
            )
        return pooled[0].float().cpu().numpy()


def load_emotion_encoder(
    backend: Literal["wav2vec2"] | None = None,
    model_name_or_path: str | None = None,
    embedding: Literal["pooled", "probabilities"] = "pooled",
    device: str = "cpu",
) -> EmotionEncoder | None:
    """Build an emotion-embedding backend, or `None` when none is configured.

    Args:
        backend (`str`, *optional*):
            `"wav2vec2"` (a transformers audio-classification checkpoint, see `Wav2Vec2EmotionEncoder`). Defaults to
            `"wav2vec2"` when `model_name_or_path` is given; with neither, no backend is configured and `None` is
            returned, which :func:`emotion_similarity` reports as unavailable.
        model_name_or_path (`str`, *optional*):
            The checkpoint folder (or a Hub id already in the local cache).
        embedding (`str`, *optional*, defaults to `"pooled"`):
            `"pooled"` or `"probabilities"`, see `Wav2Vec2EmotionEncoder`.
        device (`str`, *optional*, defaults to `"cpu"`):
            Where the model runs.

    A backend that is asked for but cannot be loaded (a missing folder, a wrong checkpoint) raises: only the absence
    of any configuration is reported as "unavailable".

    Example:

    ```python
    >>> from deepdubber_hf.evaluation.emotion import load_emotion_encoder
    >>> load_emotion_encoder() is None  # nothing configured
    True
    >>> encoder = load_emotion_encoder(model_name_or_path="path/to/wav2vec2-emotion")  # a local checkpoint
    ```
    """
    if backend is None and model_name_or_path is None:
        return None
    backend = backend or "wav2vec2"
    if backend == "wav2vec2":
        if model_name_or_path is None:
            raise ValueError(
                "backend 'wav2vec2' needs model_name_or_path: the folder of an audio-classification emotion "
                "checkpoint (e.g. a wav2vec2 speech-emotion-recognition model saved locally)."
            )
        return Wav2Vec2EmotionEncoder(model_name_or_path, embedding=embedding, device=device)
    raise ValueError(f"unknown emotion-encoder backend {backend!r}: choose 'wav2vec2' (or None for no backend).")


def emotion_similarity(
    generated: Sequence[AudioInput],
    references: Sequence[AudioInput],
    encoder: EmotionEncoder | None = None,
    sampling_rate: int | None = None,
) -> dict:
    """EMO-SIM: mean cosine similarity between emotion embeddings of generated and reference speech.

    Args:
        generated (`list`):
            The generated clips, each anything :func:`deepdubber_hf.audio.load_audio` takes (a path, a
            `(waveform, sampling_rate)` tuple, a `datasets` Audio dict or decoder, or a bare waveform).
        references (`list`):
            The reference (ground-truth) clips, one per generated clip, in the same forms.
        encoder (`EmotionEncoder`, *optional*):
            The embedding backend (see :func:`load_emotion_encoder`). Without one, nothing is scored: the result is
            an "unavailable" report with no number (the pairing is still checked).
        sampling_rate (`int`, *optional*):
            The rate of the bare waveforms among the inputs; required only when there are some.

    Returns:
        `dict`: with an encoder, `emo_sim` (the mean cosine), `per_pair` (the cosine of each pair, in order),
        `num_pairs`, `encoder` (the backend's name) and `available=True`; without one, `emo_sim=None`,
        `per_pair=None`, `available=False` and `reason`.

    Example:

    ```python
    >>> import subprocess
    >>> from deepdubber_hf.evaluation.emotion import emotion_similarity, load_emotion_encoder
    >>> _ = subprocess.run(["espeak-ng", "-w", "generated.wav", "Leave me alone!"], check=True)
    >>> _ = subprocess.run(["espeak-ng", "-w", "reference.wav", "-v", "en-us+f3", "Leave me alone!"], check=True)
    >>> emotion_similarity(["generated.wav"], ["reference.wav"])  # no backend configured
    {'emo_sim': None, 'per_pair': None, 'available': False, 'reason': 'no emotion encoder is configured: ...'}
    >>> encoder = load_emotion_encoder(model_name_or_path="path/to/wav2vec2-emotion")
    >>> emotion_similarity(["generated.wav"], ["reference.wav"], encoder=encoder)["emo_sim"]
    ```
    """
    generated, references = _check_pairs(generated, references, sampling_rate)
    if encoder is None:
        logger.warning("EMO-SIM not computed: %s", UNAVAILABLE_REASON)
        return {"emo_sim": None, "per_pair": None, "available": False, "reason": UNAVAILABLE_REASON}
    cosines = _pairwise_cosines(encoder, generated, references)
    return {
        "emo_sim": float(np.mean(cosines)),
        "per_pair": cosines,
        "num_pairs": len(cosines),
        "encoder": encoder.name,
        "available": True,
    }


__all__ = [
    "EMBEDDING_TYPES",
    "UNAVAILABLE_REASON",
    "EmotionEncoder",
    "Wav2Vec2EmotionEncoder",
    "emotion_similarity",
    "load_emotion_encoder",
]
