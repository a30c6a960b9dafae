"""The whole objective evaluation of dubbed speech, clip by clip, offline: WER, SPK-SIM, EMO-SIM, MCD-DTW,
MCD-DTW-SL, LSE-C and LSE-D (the speech columns of the paper's Tables 1, 4, 6 and 7).

Each metric has its own module (`wer`, `asr`, `speaker`, `emotion`, `mcd`, `syncnet`); a :class:`DubbingScorer`
holds the models they need, loaded once, and scores one clip at a time; :func:`aggregate_scores` turns the clips'
scores into one row of a table. A metric whose model is missing (no emotion model, no SyncNet) is `None`
everywhere, with the reason in `unavailable`: never a number that was not measured.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..audio import load_audio
from .speaker import _pairwise_cosines
from .wer import word_error_rate

METRICS = ("wer", "spk_sim", "emo_sim", "mcd", "lse")
# The per-clip keys each metric fills.
METRIC_KEYS = {
    "wer": ("hypothesis",),
    "spk_sim": ("spk_sim",),
    "emo_sim": ("emo_sim",),
    "mcd": ("mcd_dtw", "mcd_dtw_sl"),
    "lse": ("lse_c", "lse_d"),
}


class DubbingScorer:
    r"""Scores dubbed speech against the ground truth, one clip at a time.

    Args:
        metrics (`tuple` of `str`, *optional*, defaults to all of :data:`METRICS`):
            Which of `"wer"`, `"spk_sim"`, `"emo_sim"`, `"mcd"`, `"lse"` to compute.
        asr (`str` or an object with `transcribe(waveform, sampling_rate)`, *optional*, defaults to `"faster-whisper"`):
            The speech recogniser for WER: a backend name of
            :func:`~deepdubber_hf.evaluation.asr.load_asr` (`"faster-whisper"`: the offline Whisper-base,
            `"transformers"`, `"pocketsphinx"`) or a ready recogniser.
        asr_model (`str`, *optional*):
            The model folder of the `"transformers"` backend (e.g. a local Whisper large-v3).
        speaker_backend (`str`, *optional*, defaults to `"ge2e"`):
            `"ge2e"` (resemblyzer, offline) or `"wavlm"` (with `speaker_model`).
        speaker_model (`str`, *optional*):
            A `WavLMForXVector` folder for `"wavlm"`.
        emotion_model (`str`, *optional*):
            A speech-emotion audio-classification folder; without it EMO-SIM is reported unavailable.
        syncnet (`str` or [`~deepdubber_hf.evaluation.syncnet.SyncNetModel`], *optional*):
            The SyncNet for LSE (`examples/train_syncnet.py`, or the converted official one); without it LSE is
            reported unavailable.

    Example:

    ```py
    >>> from deepdubber_hf.evaluation.suite import DubbingScorer, aggregate_scores
    >>> scorer = DubbingScorer(metrics=("spk_sim", "mcd"))  # doctest: +SKIP
    >>> clip = scorer.score("generated.wav", "ground_truth.wav", "Where did you put the map?")  # doctest: +SKIP
    >>> aggregate_scores([clip], ["Where did you put the map?"], scorer.unavailable)  # doctest: +SKIP
    ```
    """

    def __init__(
        self,
        metrics: tuple = METRICS,
        asr="faster-whisper",
        asr_model: Optional[str] = None,
        speaker_backend: str = "ge2e",
        speaker_model: Optional[str] = None,
        emotion_model: Optional[str] = None,
        syncnet=None,
    ):
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}: choose among {list(METRICS)}.")
        self.metrics = tuple(metrics)
        self.unavailable = {}
        self.asr = self.speaker_encoder = self.emotion_encoder = self.syncnet = None
        if "wer" in self.metrics:
            if isinstance(asr, str):
                from .asr import load_asr

                asr = load_asr(asr, asr_model)
            self.asr = asr
        if "spk_sim" in self.metrics:
            from .speaker import load_speaker_encoder

            self.speaker_encoder = load_speaker_encoder(speaker_backend, speaker_model)
        if "emo_sim" in self.metrics:
            from .emotion import load_emotion_encoder

            self.emotion_encoder = load_emotion_encoder(model_name_or_path=emotion_model)
            if self.emotion_encoder is None:
                from .emotion import UNAVAILABLE_REASON

                self.unavailable["emo_sim"] = UNAVAILABLE_REASON
        if "lse" in self.metrics:
            if syncnet is None:
                self.unavailable["lse"] = "no SyncNet was given (syncnet=/--syncnet): train one with train_syncnet.py"
            else:
                from .syncnet import load_syncnet

                self.syncnet = load_syncnet(syncnet)

    def score(self, generated, ground_truth, transcript: str, dubbed_video: Optional[str] = None,
              mouth_bbox: Optional[list] = None, lips_visible: bool = True) -> dict:  # fmt: skip
        """The scores of one clip.

        Args:
            generated, ground_truth:
                The dubbed speech and the clip's real speech, in any form `deepdubber_hf.audio.load_audio` takes
                (a path, `(waveform, sampling_rate)`, a `datasets` audio dict).
            transcript (`str`):
                What was to be said (the WER reference).
            dubbed_video (`str`, *optional*):
                The video the speech was generated for (a silent clip or the dubbed mp4); LSE needs it.
            mouth_bbox (`list`, *optional*):
                The speaker's mouth box `[x0, y0, x1, y1]` when it is known (the procedural corpus): LSE then reads
                that mouth instead of the face OpenCV's cascade finds.
            lips_visible (`bool`, *optional*, defaults to `True`):
                False when the speaker is known to be off screen (a narration): there are no lips to sync, so LSE is
                left out for this clip (`None`) rather than measured on whatever face is there.

        Returns:
            `dict`: `hypothesis` (the recogniser's transcript), `spk_sim`, `emo_sim` (cosines), `mcd_dtw`,
            `mcd_dtw_sl`, `lse_c`, `lse_d`, `lse_offset`; `None` for what is not computed (and `mcd_error` when
            MCD cannot be computed, e.g. for silent speech).
        """
        scores = {key: None for keys in METRIC_KEYS.values() for key in keys}
        scores["lse_offset"] = None
        generated_24k = load_audio(generated, 24000)
        truth_24k = load_audio(ground_truth, 24000)
        if generated_24k.numel() == 0:
            raise ValueError("the generated speech is empty: nothing to score.")
        pair_generated, pair_truth = (generated_24k.numpy(), 24000), (truth_24k.numpy(), 24000)
        if self.asr is not None:
            scores["hypothesis"] = self.asr.transcribe(generated_24k.numpy(), 24000)
        if self.speaker_encoder is not None:
            scores["spk_sim"] = _pairwise_cosines(self.speaker_encoder, [pair_generated], [pair_truth])[0]
        if self.emotion_encoder is not None:
            scores["emo_sim"] = _pairwise_cosines(self.emotion_encoder, [pair_generated], [pair_truth])[0]
        if "mcd" in self.metrics:
            from .mcd import mcd_scores

            try:
                mcd = mcd_scores(pair_truth, pair_generated)
                scores["mcd_dtw"], scores["mcd_dtw_sl"] = mcd["mcd_dtw"], mcd["mcd_dtw_sl"]
            except ValueError as error:  # silent speech has no mel-cepstrum: left out of the mean, and said why
                scores["mcd_error"] = str(error)
        if self.syncnet is not None and lips_visible:
            if dubbed_video is None:
                raise ValueError("LSE needs the clip: pass dubbed_video= (the silent clip or the dubbed mp4).")
            from .syncnet import lse_scores

            with torch.no_grad():
                lse = lse_scores(dubbed_video, pair_generated, self.syncnet, mouth_bbox=mouth_bbox)
            scores["lse_c"], scores["lse_d"], scores["lse_offset"] = lse["lse_c"], lse["lse_d"], lse["offset"]
        return scores


def aggregate_scores(clip_scores: list, transcripts: list, unavailable: Optional[dict] = None) -> dict:
    """One table row from the scores of every clip.

    WER is the corpus WER (all edits over all reference words, after the dubbing papers' normalisation); every other
    metric is the mean over the clips. A metric no clip has is `None`.

    Args:
        clip_scores (`list` of `dict`): :meth:`DubbingScorer.score` results.
        transcripts (`list` of `str`): the scripts, in the same order.
        unavailable (`dict`, *optional*): metric → why it is missing (:attr:`DubbingScorer.unavailable`).

    Returns:
        `dict`: `num_clips`, `wer`, `spk_sim`, `emo_sim`, `mcd_dtw`, `mcd_dtw_sl`, `lse_c`, `lse_d` and
        `unavailable`.
    """
    if len(clip_scores) != len(transcripts):
        raise ValueError(f"{len(clip_scores)} clip scores but {len(transcripts)} transcripts: give one per clip.")
    if not clip_scores:
        raise ValueError("no clip was scored: nothing to aggregate.")
    row = {"num_clips": len(clip_scores)}
    hypotheses = [s.get("hypothesis") for s in clip_scores]
    row["wer"] = None if any(h is None for h in hypotheses) else word_error_rate(list(transcripts), hypotheses)
    for key in ("spk_sim", "emo_sim", "mcd_dtw", "mcd_dtw_sl", "lse_c", "lse_d"):
        values = [s[key] for s in clip_scores if s.get(key) is not None]
        row[key] = float(np.mean(values)) if values else None
    row["mcd_failures"] = sum("mcd_error" in s for s in clip_scores)
    row["lse_clips"] = sum(s.get("lse_d") is not None for s in clip_scores)
    row["unavailable"] = dict(unavailable or {})
    return row


__all__ = ["METRICS", "DubbingScorer", "aggregate_scores"]
