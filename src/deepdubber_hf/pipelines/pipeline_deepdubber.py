"""DeepDubberPipeline: script (+ optional reference voice) → speech, with the F5-TTS-class DiT.

This is the speech-generation half of DeepDubber (§3.3.1 of the paper); the video-conditioned half (ControlNet,
reasoner conclusion, duration predictor, multi-condition guidance) builds on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Literal, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor

from ..audio import TARGET_RMS, load_audio, log_mel_spectrogram, rms_normalize, save_audio
from ..models.embeddings import average_text_durations
from ..models.transformer_dit import DiTTransformerModel
from ..models.vocoder import VocosVocoder
from ..schedulers.scheduling_flow_match import FlowMatchSwayScheduler
from ..text import DeepDubberTokenizer

logger = logging.get_logger(__name__)

# Speaking rate used to size the speech when there is neither a reference voice nor `duration_in_s`:
# about 14 characters a second, ordinary English read speech.
DEFAULT_SECONDS_PER_BYTE = 1.0 / 14.0

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from deepdubber_hf import DeepDubberPipeline
        >>> pipe = DeepDubberPipeline.from_pretrained("path/to/deepdubber-pipeline")
        >>> out = pipe("Where did you put the map?", reference_audio="voice.wav",
        ...            reference_text="I left it on the table.", num_inference_steps=32)
        >>> out.save_audio("speech.wav")
        ```
"""


@dataclass
class DeepDubberPipelineOutput(BaseOutput):
    """
    Args:
        audios (`list` of `np.ndarray` or `torch.Tensor`):
            One mono waveform per prompt (lengths differ), or one mel `(num_frames, num_mel_bins)` per prompt when
            `output_type="mel"`.
        sampling_rate (`int`):
            Sampling rate of the waveforms.
        duration_in_s (`list` of `float`):
            Length of each generated speech.
        conclusion (`Any`, *optional*):
            The reasoner's conclusion that guided the speech (video dubbing only).
        reasoning (`str`, *optional*):
            The reasoner's chain of thought (video dubbing only).
    """

    audios: List[Any]
    sampling_rate: int
    duration_in_s: List[float]
    conclusion: Optional[Any] = None
    reasoning: Optional[str] = None

    def save_audio(self, path: Union[str, os.PathLike], index: int = 0) -> None:
        """Write waveform `index` to a 16-bit wav file."""
        audio = self.audios[index]
        if torch.is_tensor(audio) and audio.ndim != 1 or (isinstance(audio, np.ndarray) and audio.ndim != 1):
            raise ValueError("save_audio needs waveforms: call the pipeline with output_type='np' or 'pt'.")
        save_audio(path, audio, self.sampling_rate)


def _as_list(value, batch_size: int, name: str) -> list:
    """One value per text: a single value (a path, a waveform, a number, ...) is repeated."""
    if value is None or isinstance(value, (str, os.PathLike, tuple, dict, int, float, np.ndarray)) or \
            torch.is_tensor(value):
        return [value] * batch_size
    value = list(value)
    if len(value) != batch_size:
        raise ValueError(f"`{name}` has {len(value)} entries for {batch_size} texts: give one per text or a single one.")
    return value


def _end_sentence(reference_text: str) -> str:
    # F5-TTS joins the reference transcript and the new line with ". " unless the transcript already ends a
    # sentence, so the model hears a pause between them.
    if reference_text.endswith(". ") or reference_text.endswith("。"):
        return reference_text
    return reference_text + (" " if reference_text.endswith(".") else ". ")


class DeepDubberPipeline(DiffusionPipeline):
    r"""
    Speech from a script, optionally in the voice of a reference recording (F5-TTS-style infilling).

    Args:
        transformer ([`DiTTransformerModel`]):
            Predicts the flow of the mel spectrogram.
        scheduler ([`FlowMatchSwayScheduler`]):
            Integrates the flow from noise to mel.
        vocoder ([`VocosVocoder`]):
            Mel → waveform.
        tokenizer ([`DeepDubberTokenizer`]):
            Script → character or phoneme ids.
    """

    model_cpu_offload_seq = "transformer->vocoder"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        transformer: DiTTransformerModel,
        scheduler: FlowMatchSwayScheduler,
        vocoder: VocosVocoder,
        tokenizer: DeepDubberTokenizer,
    ):
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler, vocoder=vocoder, tokenizer=tokenizer)

    @property
    def sampling_rate(self) -> int:
        return int(self.vocoder.config.sampling_rate)

    @property
    def hop_length(self) -> int:
        return int(self.vocoder.config.hop_length)

    def check_inputs(self, text, reference_audio, reference_text, duration_in_s, speed, num_inference_steps,
                     output_type, callback_on_step_end_tensor_inputs):
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("`text` must be a string or a non-empty list of strings.")
        if any(not t.strip() for t in texts):
            raise ValueError("`text` contains an empty line: give the words to speak.")
        if reference_audio is not None and reference_text is None:
            raise ValueError(
                "`reference_audio` needs its transcript `reference_text` (the model infills after the reference)."
            )
        if reference_text is not None and reference_audio is None:
            raise ValueError("`reference_text` was given without `reference_audio`.")
        for d in _as_list(duration_in_s, len(texts), "duration_in_s"):
            if d is not None and not d > 0:
                raise ValueError(f"`duration_in_s` must be positive seconds, got {d}.")
        if not speed > 0:
            raise ValueError(f"`speed` must be positive, got {speed}.")
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be at least 1, got {num_inference_steps}.")
        if output_type not in ("np", "pt", "mel"):
            raise ValueError(f"`output_type` must be 'np', 'pt' or 'mel', got {output_type!r}.")
        unknown = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"callback tensor inputs {unknown} are not among {self._callback_tensor_inputs}.")

    def prepare_reference(self, reference_audio, device, dtype):
        """Reference voice → (mel (n_ref, c), original RMS). No reference → an empty mel and the target RMS."""
        if reference_audio is None:
            return torch.zeros(0, self.transformer.config.in_channels, device=device, dtype=dtype), TARGET_RMS
        waveform = load_audio(reference_audio, self.sampling_rate)
        if waveform.numel() < self.hop_length:
            raise ValueError("`reference_audio` is empty or shorter than one mel frame: give a few seconds of speech.")
        waveform, rms = rms_normalize(waveform)
        mel = log_mel_spectrogram(waveform.to(device), self.sampling_rate).T.to(dtype)  # (n_ref, c)
        return mel, rms

    def total_frames(self, reference_frames: int, reference_text: Optional[str], text: str,
                     duration_in_s: Optional[float], speed: float) -> int:
        """Mel frames for reference + new speech: the given duration, else F5-TTS's rule (reference rate × text)."""
        frames_per_s = self.sampling_rate / self.hop_length
        if duration_in_s is not None:
            return reference_frames + max(1, int(duration_in_s * frames_per_s))
        # F5-TTS slows very short lines down (under 10 bytes) or they come out clipped.
        local_speed = 0.3 if len(text.encode("utf-8")) < 10 else speed
        text_bytes = len(text.encode("utf-8"))
        if reference_frames > 0 and reference_text:
            rate = reference_frames / len(_end_sentence(reference_text).encode("utf-8"))
            return reference_frames + int(rate * text_bytes / local_speed)
        return max(1, int(DEFAULT_SECONDS_PER_BYTE * frames_per_s * text_bytes / local_speed))

    def prepare_latents(self, num_frames: List[int], channels: int, generator, latents, device, dtype):
        """Noise for each prompt at its own length (so a prompt's noise does not depend on the batch), padded."""
        batch = len(num_frames)
        length = max(num_frames)
        if latents is not None:
            if latents.shape != (batch, length, channels):
                raise ValueError(f"`latents` must have shape {(batch, length, channels)}, got {tuple(latents.shape)}.")
            return latents.to(device=device, dtype=dtype)
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"{len(generator)} generators were given for {batch} prompts.")
        noise = []
        for i, frames in enumerate(num_frames):
            g = generator[i] if isinstance(generator, list) else generator
            sample = randn_tensor((frames, channels), generator=g, device=device, dtype=dtype)
            noise.append(F.pad(sample, (0, 0, 0, length - frames)))
        return torch.stack(noise)

    @torch.no_grad()
    def __call__(
        self,
        text: Union[str, List[str]],
        reference_audio: Optional[Any] = None,
        reference_text: Optional[Union[str, List[str]]] = None,
        duration_in_s: Optional[Union[float, List[float]]] = None,
        speed: float = 1.0,
        num_inference_steps: int = 32,
        guidance_scale: float = 2.0,
        sway_sampling_coef: Optional[float] = -1.0,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        output_type: Literal["np", "pt", "mel"] = "np",
        return_dict: bool = True,
        callback_on_step_end: Optional[Callable[[Any, int, torch.Tensor, Dict], Dict]] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
    ):
        r"""
        Speak `text`.

        Args:
            text (`str` or `List[str]`):
                The line(s) to speak.
            reference_audio (`str`, `np.ndarray`, `torch.Tensor`, `dict` or a list of them, *optional*):
                A recording of the voice to clone (path, `(waveform, sampling_rate)`, a `datasets` audio dict, or a
                waveform at 24 kHz). Without it the model speaks in a voice of its choosing.
            reference_text (`str` or `List[str]`, *optional*):
                The transcript of `reference_audio`; required with it.
            duration_in_s (`float` or `List[float]`, *optional*):
                Length of the new speech in seconds. By default F5-TTS's rule: the reference's frames per text byte
                times the new text's bytes (divided by `speed`).
            speed (`float`, *optional*, defaults to 1.0):
                Speaking rate used by the default duration rule.
            num_inference_steps (`int`, *optional*, defaults to 32):
                ODE steps.
            guidance_scale (`float`, *optional*, defaults to 2.0):
                Classifier-free guidance strength `w` in `v + w · (v − v_uncond)` (F5-TTS's form); 0 disables it.
            sway_sampling_coef (`float`, *optional*, defaults to -1.0):
                Sway sampling coefficient; `None` for a plain grid.
            generator (`torch.Generator` or `List[torch.Generator]`, *optional*):
                Makes sampling deterministic.
            latents (`torch.Tensor` of shape `(batch, num_frames, num_mel_bins)`, *optional*):
                Initial noise over the full (reference + new) length.
            output_type (`str`, *optional*, defaults to `"np"`):
                `"np"` or `"pt"` waveforms, or `"mel"` for the generated log-mels (no vocoder).
            return_dict (`bool`, *optional*, defaults to `True`):
                Return a [`DeepDubberPipelineOutput`] instead of a tuple.
            callback_on_step_end (`Callable`, *optional*):
                Called after each model evaluation as `callback_on_step_end(self, i, t, callback_kwargs)`; may return
                a dict replacing entries of `callback_kwargs` (e.g. `latents`).
            callback_on_step_end_tensor_inputs (`List[str]`, *optional*, defaults to `["latents"]`):
                The tensors passed to the callback.

        Returns:
            [`DeepDubberPipelineOutput`] or `tuple` (audios, sampling_rate, duration_in_s).
        """
        # 1. Check inputs
        self.check_inputs(text, reference_audio, reference_text, duration_in_s, speed, num_inference_steps,
                          output_type, callback_on_step_end_tensor_inputs)
        texts = [text] if isinstance(text, str) else list(text)
        batch = len(texts)
        device = self._execution_device
        dtype = self.transformer.dtype
        references = _as_list(reference_audio, batch, "reference_audio")
        reference_texts = _as_list(reference_text, batch, "reference_text")
        durations = _as_list(duration_in_s, batch, "duration_in_s")

        # 2. Reference voices → prompt mels
        prompts, rms = zip(*(self.prepare_reference(r, device, dtype) for r in references))
        reference_frames = [p.shape[0] for p in prompts]

        # 3. Tokenize: the reference transcript then the new line, as one text
        full_texts = [(_end_sentence(r) if r else "") + t for r, t in zip(reference_texts, texts)]
        text_ids = self.tokenizer.text_to_ids(full_texts).to(device)  # (b, nt)

        # 4. Lengths (reference + new speech); as in F5-TTS at least one frame more than the tokens and reference
        total = [
            max(self.total_frames(n_ref, ref_text, t, d, speed), n_ref + 1, int((ids >= 0).sum()) + 1)
            for n_ref, ref_text, t, d, ids in zip(reference_frames, reference_texts, texts, durations, text_ids)
        ]
        text_durations = None
        if self.transformer.config.text_upsampling == "average":
            text_durations = self._spans(reference_texts, texts, reference_frames, total).to(device)
        length = max(total)
        mask = torch.arange(length, device=device)[None] < torch.tensor(total, device=device)[:, None]  # (b, n)
        attention_mask = mask if batch > 1 else None

        # 5. Prompt mel over the full length: the reference, zeros where speech is generated
        cond = torch.stack([F.pad(p, (0, 0, 0, length - p.shape[0])) for p in prompts])  # (b, n, c)
        cond_mask = torch.arange(length, device=device)[None] < torch.tensor(reference_frames, device=device)[:, None]

        # 6. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device, sway_sampling_coef=sway_sampling_coef,
                                     dtype=dtype)
        timesteps = self.scheduler.timesteps

        # 7. Initial noise
        latents = self.prepare_latents(total, cond.shape[-1], generator, latents, device, dtype)

        # 8. Text features once for every step; the unconditional branch drops prompt audio and text together
        do_cfg = guidance_scale > 1e-5
        text_embeds = self.transformer.embed_text(text_ids, length, attention_mask, text_durations=text_durations)
        if do_cfg:
            null_embeds = self.transformer.embed_text(
                text_ids, length, attention_mask, drop_text=True, text_durations=text_durations
            )
            text_embeds = torch.cat([text_embeds, null_embeds])
            cond_in = torch.cat([cond, torch.zeros_like(cond)])
            mask_in = torch.cat([attention_mask, attention_mask]) if attention_mask is not None else None
        else:
            cond_in, mask_in = cond, attention_mask

        # 9. Denoise
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                model_in = torch.cat([latents, latents]) if do_cfg else latents
                velocity = self.transformer(
                    model_in, cond_in, t.expand(model_in.shape[0]), text_embeds=text_embeds, attention_mask=mask_in
                ).sample
                if do_cfg:
                    conditional, unconditional = velocity.chunk(2)
                    velocity = conditional + (conditional - unconditional) * guidance_scale
                latents = self.scheduler.step(velocity, t, latents).prev_sample
                if callback_on_step_end is not None:
                    tensors = {"latents": latents}
                    callback_kwargs = {k: tensors[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)
                progress_bar.update()

        # 10. Keep the reference frames as given, cut each prompt's new speech out
        latents = torch.where(cond_mask[..., None], cond, latents)
        mels = [latents[i, n_ref:n] for i, (n_ref, n) in enumerate(zip(reference_frames, total))]  # (n_i, c)
        duration_s = [m.shape[0] * self.hop_length / self.sampling_rate for m in mels]

        # 11. Vocode, and give quiet reference voices their loudness back
        if output_type == "mel":
            audios = mels
        else:
            audios = []
            for mel, r in zip(mels, rms):
                wave = self.vocoder(mel.T[None].float())[0]
                if r < TARGET_RMS:
                    wave = wave * r / TARGET_RMS
                audios.append(wave.cpu().numpy() if output_type == "np" else wave)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (audios, self.sampling_rate, duration_s)
        return DeepDubberPipelineOutput(audios=audios, sampling_rate=self.sampling_rate, duration_in_s=duration_s)

    def _spans(self, reference_texts, texts, reference_frames, total) -> torch.Tensor:
        """Frames per token for average upsampling: reference tokens over the reference, new tokens after it."""
        rows = []
        for ref_text, text, n_ref, n in zip(reference_texts, texts, reference_frames, total):
            n_ref_tokens = len(self.tokenizer.tokens(_end_sentence(ref_text))) if ref_text else 0
            n_new_tokens = len(self.tokenizer.tokens(text))
            rows.append(torch.cat([average_text_durations(n_ref_tokens, n_ref),
                                   average_text_durations(n_new_tokens, n - n_ref)]))
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)


__all__ = ["DeepDubberPipeline", "DeepDubberPipelineOutput"]
