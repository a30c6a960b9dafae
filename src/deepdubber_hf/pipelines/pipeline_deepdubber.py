"""DeepDubberPipeline: script (+ optional reference voice) → speech, and silent clip + line → dubbed clip.

Without a video it is the speech generator of §3.3.1 of the paper (F5-TTS-class flow matching). With a video it is
the whole of stage 2.2 (§3.3.2): the reasoner's conclusion about the clip (unless the caller gives one), video
features from a CLIP vision model, the conclusion encoded by a T5 encoder, the duration predictor placing the
speech where the mouths move, the ControlNet steering the frozen DiT, and eq. 20's guidance over video,
conclusion and script; the speech is laid on a track as long as the clip, ready for `save_video`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Literal, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor

from ..audio import TARGET_RMS, load_audio, log_mel_spectrogram, rms_normalize, save_audio
from ..models.transformer_dit import DiTTransformerModel
from ..models.vocoder import GriffinLimVocoder, VocosVocoder
from ..schedulers.scheduling_flow_match import FlowMatchSwayScheduler
from ..text import DeepDubberTokenizer
from .dubbing import (
    MAX_BYTES_PER_SECOND,
    Segment,
    assemble_track,
    assign_voices,
    check_reference_waveform,
    mux_audio_into_video,
    plan_segments,
)
from .guidance import branch_drop_flags, combine_branches, stack_branches

logger = logging.get_logger(__name__)

# Lines of a video sampled together in one batch.
LINES_PER_BATCH = 16

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
        >>> dub = pipe(video="silent_clip.mp4", text="Where did you put the map?")
        >>> dub.conclusion.scene_type, dub.segments[0]["onset_s"]
        >>> dub.save_video("dubbed.mp4")
        ```
"""


@dataclass
class DeepDubberPipelineOutput(BaseOutput):
    """
    Args:
        audios (`list` of `np.ndarray` or `torch.Tensor`):
            One mono waveform per prompt (lengths differ), or one mel `(num_frames, num_mel_bins)` per prompt when
            `output_type="mel"`. With a video: one track as long as the video, every line at its place.
        sampling_rate (`int`):
            Sampling rate of the waveforms.
        duration_in_s (`list` of `float`):
            Length of each generated speech (with a video: of each line).
        conclusion (`Any`, *optional*):
            The reasoner's conclusion that guided the speech (video dubbing only; `None` if there was none).
        reasoning (`str`, *optional*):
            The reasoner's chain of thought (video dubbing only, when the reasoner ran).
        segments (`list` of `dict`, *optional*):
            Video dubbing only: per line its `text`, `speaker`, and `onset_s` / `offset_s` in the clip.
        video (`str`, *optional*):
            The dubbed video's path, for `save_video`.
    """

    audios: List[Any]
    sampling_rate: int
    duration_in_s: List[float]
    conclusion: Optional[Any] = None
    reasoning: Optional[str] = None
    segments: Optional[List[dict]] = None
    video: Optional[str] = field(default=None, repr=False)

    def save_audio(self, path: Union[str, os.PathLike], index: int = 0) -> None:
        """Write waveform `index` to a 16-bit wav file."""
        audio = self.audios[index]
        if torch.is_tensor(audio) and audio.ndim != 1 or (isinstance(audio, np.ndarray) and audio.ndim != 1):
            raise ValueError("save_audio needs waveforms: call the pipeline with output_type='np' or 'pt'.")
        save_audio(path, audio, self.sampling_rate)

    def save_video(self, path: Union[str, os.PathLike]) -> None:
        """Write the dubbed clip: the input video's stream copied as it is, the dubbed track as its audio (ffmpeg).
        The file appears only once complete."""
        if self.video is None:
            raise ValueError(
                "save_video needs a dubbing of a video file: call the pipeline with video='clip.mp4' (a path)."
            )
        track = self.audios[0]
        if torch.is_tensor(track):
            track = track.detach().cpu().numpy()
        if np.ndim(track) != 1:
            raise ValueError("save_video needs the waveform: call the pipeline with output_type='np' or 'pt'.")
        mux_audio_into_video(self.video, track, self.sampling_rate, path)


@dataclass
class DubPlan:
    """A dubbing before sampling (see `DeepDubberPipeline.plan_dub`): the clip's length and video features
    `(f, dv)` at 10 fps, the encoded conclusion, and per line its reference mel, loudness, transcript, and the
    onset (in the clip) and length of its speech, in seconds."""

    clip_s: float
    segments: List[Segment]
    features: Optional[torch.Tensor]
    condition: Optional[tuple]
    conclusion: Optional[Any]
    reasoning: Optional[str]
    prompts: List[torch.Tensor] = field(default_factory=list)
    rms: List[float] = field(default_factory=list)
    reference_texts: List[Optional[str]] = field(default_factory=list)
    onsets_s: List[float] = field(default_factory=list)
    durations_s: List[float] = field(default_factory=list)

    def line_frames(self, frames_per_second: float) -> tuple[list, list]:
        """Per line, the mel frames to sample (its reference prompt, then whole frames inside its planned span, so
        the speech never runs past its window) and the ControlNet's video input over them (`None` without video
        features): what `generate_mels` takes as `total` and `video_features`."""
        from ..models.conditioning import video_under_speech

        total, video_features = [], []
        for prompt, onset, duration in zip(self.prompts, self.onsets_s, self.durations_s):
            n_ref, n_new = prompt.shape[0], max(1, int(duration * frames_per_second + 1e-6))
            total.append(n_ref + n_new)
            video_features.append(None if self.features is None else
                                  video_under_speech(self.features, onset, onset + duration, n_ref, n_new))
        return total, video_features


def _as_list(value, batch_size: int, name: str) -> list:
    """One value per text: a single value (a path, a waveform, a number, ...) is repeated."""
    if value is None or isinstance(value, (str, os.PathLike, tuple, dict, int, float, np.ndarray)) or \
            torch.is_tensor(value) or hasattr(value, "get_all_samples"):  # a torchcodec decoder (datasets 4+)
        return [value] * batch_size
    value = list(value)
    if len(value) != batch_size:
        raise ValueError(
            f"`{name}` has {len(value)} entries for {batch_size} texts: give one per text or a single one."
        )
    return value


def _end_sentence(reference_text: str) -> str:
    # F5-TTS joins the reference transcript and the new line with ". " unless the transcript already ends a
    # sentence, so the model hears a pause between them.
    if reference_text.endswith(". ") or reference_text.endswith("。"):
        return reference_text
    return reference_text + (" " if reference_text.endswith(".") else ". ")


class DeepDubberPipeline(DiffusionPipeline):
    r"""
    Speech from a script, optionally in the voice of a reference recording (F5-TTS-style infilling); with a video,
    the speech of a silent clip, timed to its mouths, in the voice the scene calls for.

    Args:
        transformer ([`DiTTransformerModel`]):
            Predicts the flow of the mel spectrogram.
        scheduler ([`FlowMatchSwayScheduler`]):
            Integrates the flow from noise to mel.
        vocoder ([`VocosVocoder`] or [`GriffinLimVocoder`]):
            Mel → waveform.
        tokenizer ([`DeepDubberTokenizer`]):
            Script → character or phoneme ids.
        controlnet ([`DeepDubberControlNetModel`], *optional*):
            Steers the transformer with video features and the conclusion (stage 2.2).
        duration_predictor ([`DurationPredictorModel`], *optional*):
            Where the speech starts and ends in the clip.
        video_encoder ([`~transformers.CLIPVisionModelWithProjection`], *optional*):
            Video frames (10 per second) → features.
        image_processor ([`~transformers.CLIPImageProcessor`], *optional*):
            Frames → the video encoder's pixels.
        condition_encoder ([`~transformers.T5EncoderModel`], *optional*):
            The conclusion's text → features.
        condition_tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            Its tokenizer.
        reasoner ([`DeepDubberReasonerForConditionalGeneration`] or another VLM, *optional*):
            Reasons over the frames to the conclusion (stage 1) when the caller gives none.
        reasoner_processor ([`DeepDubberReasonerProcessor`], *optional*):
            Its processor.
        reasoner_mode (`str`, *optional*, defaults to `"cot"`):
            How the reasoner was trained to answer: `"cot"` (the four-section reasoning) or `"qa"` (the conclusion
            line alone, `examples/train_sft.py --mode qa`).
    """

    model_cpu_offload_seq = (
        "reasoner->video_encoder->condition_encoder->duration_predictor->controlnet->transformer->vocoder"
    )
    _optional_components = [
        "controlnet", "duration_predictor", "video_encoder", "image_processor", "condition_encoder",
        "condition_tokenizer", "reasoner", "reasoner_processor",
    ]  # fmt: skip
    _callback_tensor_inputs = ["latents"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' `from_pretrained`, after importing the modules `model_index.json` names (diffusers only loads
        classes from modules the process has imported): the reasoner's, which nothing else imports."""
        from .. import reasoner  # noqa: F401  (registers DeepDubberReasoner* under their module paths)

        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def __init__(
        self,
        transformer: DiTTransformerModel,
        scheduler: FlowMatchSwayScheduler,
        vocoder: Union[VocosVocoder, GriffinLimVocoder],
        tokenizer: DeepDubberTokenizer,
        controlnet=None,
        duration_predictor=None,
        video_encoder=None,
        image_processor=None,
        condition_encoder=None,
        condition_tokenizer=None,
        reasoner=None,
        reasoner_processor=None,
        reasoner_mode: str = "cot",
    ):
        super().__init__()
        if reasoner_mode not in ("cot", "qa"):
            raise ValueError(f"reasoner_mode must be 'cot' or 'qa', got {reasoner_mode!r}.")
        self.register_to_config(reasoner_mode=reasoner_mode)
        self.register_modules(
            transformer=transformer, scheduler=scheduler, vocoder=vocoder, tokenizer=tokenizer, controlnet=controlnet,
            duration_predictor=duration_predictor, video_encoder=video_encoder, image_processor=image_processor,
            condition_encoder=condition_encoder, condition_tokenizer=condition_tokenizer, reasoner=reasoner,
            reasoner_processor=reasoner_processor,
        )  # fmt: skip

    @property
    def sampling_rate(self) -> int:
        return int(self.vocoder.config.sampling_rate)

    @property
    def hop_length(self) -> int:
        return int(self.vocoder.config.hop_length)

    @property
    def frames_per_second(self) -> float:
        return self.sampling_rate / self.hop_length

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
        self.check_sampling_inputs(speed, num_inference_steps, output_type, callback_on_step_end_tensor_inputs)

    def check_sampling_inputs(self, speed, num_inference_steps, output_type, callback_on_step_end_tensor_inputs):
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
        try:
            waveform = load_audio(reference_audio, self.sampling_rate, require_mono=True)
        except ValueError as error:
            raise ValueError(f"`reference_audio`: {error}") from error
        check_reference_waveform(waveform, self.sampling_rate)
        waveform, rms = rms_normalize(waveform)
        mel = log_mel_spectrogram(waveform.to(device), self.sampling_rate).T.to(dtype)  # (n_ref, c)
        return mel, rms

    def total_frames(self, reference_frames: int, reference_text: Optional[str], text: str,
                     duration_in_s: Optional[float], speed: float) -> int:
        """Mel frames for reference + new speech: the given duration, else F5-TTS's rule (reference rate × text)."""
        frames_per_s = self.frames_per_second
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
        text: Optional[Union[str, List[str]]] = None,
        video: Optional[Any] = None,
        reference_audio: Optional[Any] = None,
        reference_text: Optional[Union[str, List[str]]] = None,
        conclusion: Optional[Any] = None,
        subtitles: Optional[Union[str, os.PathLike, list]] = None,
        duration_in_s: Optional[Union[float, List[float]]] = None,
        speed: float = 1.0,
        num_inference_steps: int = 32,
        guidance_scale: float = 2.0,
        video_guidance_scale: float = 3.0,
        conclusion_guidance_scale: float = 3.0,
        text_guidance_scale: float = 3.0,
        use_video: bool = True,
        use_conclusion: bool = True,
        use_duration_predictor: bool = True,
        sway_sampling_coef: Optional[float] = -1.0,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        output_type: Literal["np", "pt", "mel"] = "np",
        return_dict: bool = True,
        callback_on_step_end: Optional[Callable[[Any, int, torch.Tensor, Dict], Dict]] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
    ):
        r"""
        Speak `text`; with `video`, dub the clip.

        Args:
            text (`str` or `List[str]`):
                The line(s) to speak. With a video: the one line to dub (or none, with `subtitles`).
            video (`str`, *optional*):
                A silent clip to dub (a path; also encoded bytes or a `datasets` Video dict, though `save_video`
                needs a path). The output is then one track as long as the video.
            reference_audio (`str`, `np.ndarray`, `torch.Tensor`, `dict` or a list of them, *optional*):
                A recording of the voice to clone (path, `(waveform, sampling_rate)`, a `datasets` audio dict, or a
                mono waveform at 24 kHz). Without it the model speaks in a voice of its choosing. With subtitles
                naming several speakers: a list with one voice per speaker, in the order they first speak, or a
                dict from speaker name to voice.
            reference_text (`str` or `List[str]`, *optional*):
                The transcript of `reference_audio` (a list or dict matching it); required with it.
            conclusion (`DubbingConclusion`, `dict` or `str`, *optional*):
                (As text: `"scene type: monologue; speakers: 1; gender: female; age: young; emotion: happy"`.)
                What the scene calls for (scene type, speakers, gender, age, emotion). By default the pipeline's
                reasoner concludes it from the video; without a reasoner the speech is not steered by one.
            subtitles (`str`, `os.PathLike` or list of `Cue`, *optional*):
                For long videos: an .srt file (or its text, or parsed cues); every cue is dubbed inside its time
                window, its named speaker (`ALICE: ...`) choosing the voice.
            duration_in_s (`float` or `List[float]`, *optional*):
                Length of the new speech in seconds. By default the duration predictor's (with a video), else
                F5-TTS's rule: the reference's frames per text byte times the new text's bytes (divided by `speed`).
            speed (`float`, *optional*, defaults to 1.0):
                Speaking rate used by the default duration rule.
            num_inference_steps (`int`, *optional*, defaults to 32):
                ODE steps.
            guidance_scale (`float`, *optional*, defaults to 2.0):
                Classifier-free guidance strength `w` in `v + w · (v − v_uncond)` (F5-TTS's form) when there is no
                ControlNet; 0 disables it.
            video_guidance_scale, conclusion_guidance_scale, text_guidance_scale (`float`, *optional*, defaults to 3.0):
                λ_V, λ_C, λ_T of eq. 20 (with a ControlNet). All at 1 give the plain conditional flow; all at 3
                match F5-TTS's `guidance_scale=2` on the script.
            use_video, use_conclusion, use_duration_predictor (`bool`, *optional*, default to `True`):
                The ablations of Table 7: without the video features, without the conclusion, and without the
                duration predictor (then F5-TTS's length rule, the speech starting with its window).
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
        sampling = dict(
            speed=speed, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            scales=(video_guidance_scale, conclusion_guidance_scale, text_guidance_scale),
            sway_sampling_coef=sway_sampling_coef, generator=generator, latents=latents,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        if video is not None:
            output = self._dub(text, video, reference_audio, reference_text, conclusion, subtitles, duration_in_s,
                               use_video, use_conclusion, use_duration_predictor, output_type, sampling)  # fmt: skip
        else:
            if conclusion is not None or subtitles is not None:
                raise ValueError("`conclusion` and `subtitles` go with a `video`: pass the clip to dub as `video=`.")
            output = self._speak(text, reference_audio, reference_text, duration_in_s, output_type, sampling)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output.audios, output.sampling_rate, output.duration_in_s)
        return output

    # ------------------------------------------------------------------------------------------------------------
    # Text to speech
    # ------------------------------------------------------------------------------------------------------------

    def _speak(self, text, reference_audio, reference_text, duration_in_s, output_type, sampling):
        self.check_inputs(text, reference_audio, reference_text, duration_in_s, sampling["speed"],
                          sampling["num_inference_steps"], output_type, sampling["callback_on_step_end_tensor_inputs"])
        texts = [text] if isinstance(text, str) else list(text)
        batch = len(texts)
        device, dtype = self._execution_device, self.transformer.dtype
        references = _as_list(reference_audio, batch, "reference_audio")
        reference_texts = _as_list(reference_text, batch, "reference_text")
        durations = _as_list(duration_in_s, batch, "duration_in_s")
        prompts, rms = zip(*(self.prepare_reference(r, device, dtype) for r in references))
        total = [
            self.total_frames(p.shape[0], ref_text, t, d, sampling["speed"])
            for p, ref_text, t, d in zip(prompts, reference_texts, texts, durations)
        ]
        mels = self.generate_mels(texts, list(prompts), reference_texts, total, sampling)
        audios = self.vocode(mels, rms, output_type)
        duration_s = [m.shape[0] / self.frames_per_second for m in mels]
        return DeepDubberPipelineOutput(audios=audios, sampling_rate=self.sampling_rate, duration_in_s=duration_s)

    def vocode(self, mels, rms, output_type):
        """Mels → waveforms (or the mels themselves for `output_type="mel"`), quiet reference voices' loudness
        given back."""
        if output_type == "mel":
            return mels
        audios = []
        for mel, r in zip(mels, rms):
            wave = self.vocoder(mel.T[None].float())[0]
            if r < TARGET_RMS:
                wave = wave * r / TARGET_RMS
            audios.append(wave.cpu().numpy() if output_type == "np" else wave)
        return audios

    def generate_mels(self, texts, prompts, reference_texts, total, sampling, video_features=None, condition=None):
        """The new speech's mel `(n_i, c)` of every prompt.

        Args:
            texts, reference_texts (`list[str]`): the lines and the transcripts of their reference voices.
            prompts (`list[torch.Tensor]`): the reference mels `(n_ref_i, c)` (empty without a reference).
            total (`list[int]`): mel frames of reference + new speech per prompt.
            sampling (`dict`): the sampling arguments of `__call__`.
            video_features (`list[torch.Tensor]`, *optional*): per prompt `(total_i, dv)` at the mel rate (zero
                over the reference); with the ControlNet, the four-branch guidance of eq. 20 runs.
            condition (`tuple`, *optional*): the encoded conclusion `(b, m, dc)` and its mask `(b, m)`.
        """
        batch = len(texts)
        device, dtype = self._execution_device, self.transformer.dtype
        reference_frames = [p.shape[0] for p in prompts]
        full_texts = [(_end_sentence(r) if r else "") + t for r, t in zip(reference_texts, texts)]
        text_ids = self.tokenizer.text_to_ids(full_texts).to(device)  # (b, nt)
        # As in F5-TTS at least one frame more than the tokens and the reference.
        total = [
            max(n, n_ref + 1, int((ids >= 0).sum()) + 1) for n, n_ref, ids in zip(total, reference_frames, text_ids)
        ]
        text_durations = None
        if self.transformer.config.text_upsampling == "average":
            text_durations = spread_text(self.tokenizer, text_ids, reference_texts, reference_frames, total, prompts)
            text_durations = text_durations.to(device)
        length = max(total)
        mask = torch.arange(length, device=device)[None] < torch.tensor(total, device=device)[:, None]  # (b, n)
        attention_mask = mask if batch > 1 else None

        # Prompt mel over the full length: the reference, zeros where speech is generated
        cond = torch.stack([F.pad(p, (0, 0, 0, length - p.shape[0])) for p in prompts])  # (b, n, c)
        cond_mask = torch.arange(length, device=device)[None] < torch.tensor(reference_frames, device=device)[:, None]

        self.scheduler.set_timesteps(sampling["num_inference_steps"], device=device,
                                     sway_sampling_coef=sampling["sway_sampling_coef"], dtype=dtype)  # fmt: skip
        timesteps = self.scheduler.timesteps
        latents = self.prepare_latents(total, cond.shape[-1], sampling["generator"], sampling["latents"], device, dtype)

        if self.controlnet is not None and video_features is not None:
            video = torch.stack([F.pad(v.to(device, dtype), (0, 0, 0, length - v.shape[0])) for v in video_features])
            velocity_fn = self._guided_velocity_fn(text_ids, length, attention_mask, text_durations, cond, video,
                                                   condition, sampling["scales"])  # fmt: skip
        else:
            velocity_fn = self._cfg_velocity_fn(text_ids, length, attention_mask, text_durations, cond,
                                                sampling["guidance_scale"])  # fmt: skip

        callback = sampling["callback_on_step_end"]
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                latents = self.scheduler.step(velocity_fn(latents, t), t, latents).prev_sample
                if callback is not None:
                    tensors = {"latents": latents}
                    callback_kwargs = {k: tensors[k] for k in sampling["callback_on_step_end_tensor_inputs"]}
                    callback_outputs = callback(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)
                progress_bar.update()

        # Keep the reference frames as given, cut each prompt's new speech out
        latents = torch.where(cond_mask[..., None], cond, latents)
        return [latents[i, n_ref:n] for i, (n_ref, n) in enumerate(zip(reference_frames, total))]  # (n_i, c)

    def _cfg_velocity_fn(self, text_ids, length, attention_mask, text_durations, cond, guidance_scale):
        """F5-TTS's guidance: the unconditional branch drops prompt audio and text together."""
        do_cfg = guidance_scale > 1e-5
        text_embeds = self.transformer.embed_text(text_ids, length, attention_mask, text_durations=text_durations)
        cond_in, mask_in = cond, attention_mask
        if do_cfg:
            null_embeds = self.transformer.embed_text(
                text_ids, length, attention_mask, drop_text=True, text_durations=text_durations
            )
            text_embeds = torch.cat([text_embeds, null_embeds])
            cond_in = torch.cat([cond, torch.zeros_like(cond)])
            mask_in = torch.cat([attention_mask, attention_mask]) if attention_mask is not None else None

        def velocity(latents, t):
            model_in = torch.cat([latents, latents]) if do_cfg else latents
            out = self.transformer(
                model_in, cond_in, t.expand(model_in.shape[0]), text_embeds=text_embeds, attention_mask=mask_in
            ).sample
            if not do_cfg:
                return out
            conditional, unconditional = out.chunk(2)
            return conditional + (conditional - unconditional) * guidance_scale

        return velocity

    def _guided_velocity_fn(self, text_ids, length, attention_mask, text_durations, cond, video, condition, scales):
        """Eq. 20: the four branches (all; no video; no video or conclusion; nothing) in one batched forward of the
        ControlNet and the DiT per step. A missing conclusion is dropped in every branch."""
        batch = text_ids.shape[0]
        flags = branch_drop_flags(batch, device=text_ids.device)
        condition_embeds = condition_mask = None
        if condition is None:
            flags["drop_conclusion"] = torch.ones_like(flags["drop_conclusion"])
        else:
            condition_embeds, condition_mask = (stack_branches(c) for c in condition)
        ids, mask_in = stack_branches(text_ids), stack_branches(attention_mask)
        durations = stack_branches(text_durations)
        text_embeds = self.transformer.embed_text(ids, length, mask_in, flags["drop_text"], durations)
        control_text_embeds = self.controlnet.embed_text(ids, length, mask_in, flags["drop_text"], durations)
        cond_in, video_in = stack_branches(cond), stack_branches(video)

        def velocity(latents, t):
            model_in = stack_branches(latents)
            timestep = t.expand(model_in.shape[0])
            residuals = self.controlnet(
                model_in, cond_in, timestep, video_features=video_in, condition_embeds=condition_embeds,
                condition_mask=condition_mask, text_embeds=control_text_embeds, attention_mask=mask_in,
                drop_audio_cond=flags["drop_audio_cond"], drop_video=flags["drop_video"],
                drop_conclusion=flags["drop_conclusion"],
            ).controlnet_block_samples  # fmt: skip
            out = self.transformer(
                model_in, cond_in, timestep, text_embeds=text_embeds, attention_mask=mask_in,
                drop_audio_cond=flags["drop_audio_cond"], block_controlnet_hidden_states=list(residuals),
            ).sample  # fmt: skip
            return combine_branches(out, *scales)

        return velocity

    # ------------------------------------------------------------------------------------------------------------
    # Dubbing a video
    # ------------------------------------------------------------------------------------------------------------

    def conclude(self, video, conclusion=None, use_conclusion: bool = True):
        """(conclusion, reasoning): the caller's conclusion (a `DubbingConclusion`, its dict, or text), else the
        reasoner's over the clip, else none. An unreadable reasoning is logged and leaves no conclusion."""
        from ..reasoner.cot import DubbingConclusion, parse_conclusion

        if not use_conclusion:
            return None, None
        if conclusion is not None:
            example = "'scene type: dialogue; speakers: 2; gender: male; age: adult; emotion: angry'"
            if isinstance(conclusion, str):
                parsed = parse_conclusion(conclusion)
                if not parsed:
                    raise ValueError(
                        f"`conclusion` {conclusion!r} cannot be read ({parsed.detail}): write it as {example}."
                    )
                conclusion = parsed
            elif isinstance(conclusion, dict):
                try:
                    conclusion = DubbingConclusion(**conclusion)
                except TypeError as error:
                    raise ValueError(
                        f"`conclusion` {conclusion!r} is not a conclusion's fields ({error}): e.g. {example}."
                    ) from error
            if not isinstance(conclusion, DubbingConclusion):
                raise ValueError(
                    f"`conclusion` must be a DubbingConclusion, a dict of its fields or its text, e.g. {example}."
                )
            return conclusion, None
        if self.reasoner is None:
            return None, None
        from ..reasoner.generation import parse_response, reason

        mode = self.config.get("reasoner_mode", "cot")
        reasoning = reason(self.reasoner, self.reasoner_processor, [video], mode=mode)[0][0]
        parsed = parse_response(reasoning, mode)
        if not parsed:
            logger.warning(f"the reasoner's answer could not be read ({parsed.reason}): dubbing without a conclusion.")
            return None, reasoning
        return parsed, reasoning

    def encode_video(self, video) -> tuple[Optional[torch.Tensor], float]:
        """Video features `(f, dv)` at 10 frames a second (None without a video encoder) and the clip's length."""
        from ..models.conditioning import encode_frames, load_frames_at_rate

        frames, duration_s = load_frames_at_rate(video)
        if self.video_encoder is None:
            return None, duration_s
        return encode_frames(self.video_encoder, self.image_processor, frames), duration_s

    def encode_conclusion(self, conclusion) -> Optional[tuple]:
        """The conclusion through the condition encoder: `(1, m, dc)` embeddings and their mask, or None."""
        from ..models.conditioning import encode_conclusions

        if conclusion is None or self.condition_encoder is None:
            return None
        return encode_conclusions(self.condition_encoder, self.condition_tokenizer, [conclusion.to_text()])

    def place_speech(self, segment: Segment, features, condition, frames_needed: Optional[int],
                     duration_in_s: Optional[float], use_duration_predictor: bool) -> tuple[float, float]:
        """(onset, duration) in seconds of a line's speech inside its window.

        The duration predictor gives both when the pipeline has one (and `use_duration_predictor`); a given
        `duration_in_s` overrides its length. Otherwise the speech starts with the window and lasts
        `frames_needed` mel frames (F5-TTS's rule). The speech always fits the window."""
        from ..models.conditioning import VIDEO_FPS

        window = segment.window_s
        shortest = len(segment.text.encode("utf-8")) / MAX_BYTES_PER_SECOND
        onset, duration = 0.0, (duration_in_s or (frames_needed or 1) / self.frames_per_second)
        if self.duration_predictor is not None and use_duration_predictor:
            device = self._execution_device
            dtype = self.duration_predictor.dtype
            # The window's own frames, as in training (frame i of the clip at i / 10 s): its times are seconds
            # from the first of them.
            first = min(int(round(segment.start_s * VIDEO_FPS)), len(features) - 1 if features is not None else 0)
            last = max(first + 1, int(round(segment.end_s * VIDEO_FPS)))
            if features is None:
                video = torch.zeros(1, last - first, self.duration_predictor.config.video_dim, device=device,
                                    dtype=dtype)  # fmt: skip
            else:
                video = features[first:last][None].to(device, dtype)
            embeds, mask = condition if condition is not None else (None, None)
            predicted = self.duration_predictor(
                video_features=video, text_ids=self.tokenizer.text_to_ids([segment.text]).to(device),
                condition_embeds=embeds, condition_mask=mask,
            )  # fmt: skip
            onset = first / VIDEO_FPS + float(predicted.onset_s[0]) - segment.start_s
            if duration_in_s is None:
                duration = float(predicted.duration_s[0])
        if duration_in_s is not None and duration_in_s > window + 1e-6:
            raise ValueError(
                f"`duration_in_s` {duration_in_s:.2f} s is longer than the line's window ({window:.2f} s): give a "
                "shorter duration or a longer clip."
            )
        duration = min(max(duration, shortest), window)
        onset = min(max(onset, 0.0), window - duration)
        return segment.start_s + onset, duration

    @torch.no_grad()
    def plan_dub(self, video, text=None, subtitles=None, reference_audio=None, reference_text=None, conclusion=None,
                 duration_in_s=None, use_video=True, use_conclusion=True, use_duration_predictor=True,
                 speed: float = 1.0) -> "DubPlan":
        """Everything of a dubbing but the sampling: the clip's features, the conclusion, the lines with their
        voices, and where each line's speech goes (`DubPlan.onsets_s`, `DubPlan.durations_s`)."""
        if isinstance(text, str) and not text.strip():
            raise ValueError("`text` is empty or whitespace: give the words to speak.")
        if duration_in_s is not None and (isinstance(duration_in_s, (list, tuple)) or not duration_in_s > 0):
            raise ValueError(
                f"`duration_in_s` must be one positive number of seconds with a video, got {duration_in_s}."
            )
        device, dtype = self._execution_device, self.transformer.dtype
        features, clip_s = self.encode_video(video)
        segments = plan_segments(text, subtitles, clip_s)
        voices = assign_voices(segments, reference_audio, reference_text)
        prepared = {}  # each distinct voice once
        for audio, _ in voices:
            if id(audio) not in prepared:
                prepared[id(audio)] = self.prepare_reference(audio, device, dtype)
        conclusion, reasoning = self.conclude(video, conclusion, use_conclusion)
        condition = self.encode_conclusion(conclusion)
        if not use_video and features is not None:
            features = torch.zeros_like(features)
        plan = DubPlan(clip_s, segments, features, condition, conclusion, reasoning)
        for segment, (audio, ref_text) in zip(segments, voices):
            prompt, level = prepared[id(audio)]
            rule = self.total_frames(prompt.shape[0], ref_text, segment.text, None, speed) - prompt.shape[0]
            onset, duration = self.place_speech(segment, features, condition, rule, duration_in_s,
                                                use_duration_predictor)  # fmt: skip
            plan.prompts.append(prompt)
            plan.rms.append(level)
            plan.reference_texts.append(ref_text)
            plan.onsets_s.append(onset)
            plan.durations_s.append(duration)
        return plan

    def _dub(self, text, video, reference_audio, reference_text, conclusion, subtitles, duration_in_s, use_video,
             use_conclusion, use_duration_predictor, output_type, sampling):
        self.check_sampling_inputs(sampling["speed"], sampling["num_inference_steps"], output_type,
                                   sampling["callback_on_step_end_tensor_inputs"])  # fmt: skip
        plan = self.plan_dub(video, text, subtitles, reference_audio, reference_text, conclusion, duration_in_s,
                             use_video, use_conclusion, use_duration_predictor, sampling["speed"])  # fmt: skip
        total, video_features = plan.line_frames(self.frames_per_second)
        # The lines are sampled LINES_PER_BATCH at a time (a film's subtitles would not fit one batch).
        count, mels = len(plan.segments), []
        generator = sampling["generator"]
        if isinstance(generator, list) and len(generator) != count:
            raise ValueError(f"{len(generator)} generators were given for {count} lines: give one, or one per line.")
        if sampling["latents"] is not None and count > LINES_PER_BATCH:
            raise ValueError(f"`latents` cannot be given for more than {LINES_PER_BATCH} lines.")
        for start in range(0, count, LINES_PER_BATCH):
            part = slice(start, start + LINES_PER_BATCH)
            size = len(plan.segments[part])
            condition = None if plan.condition is None else tuple(
                c.expand(size, *c.shape[1:]) for c in plan.condition)  # the one conclusion, for every line
            chunk = {**sampling, "generator": generator[part] if isinstance(generator, list) else generator}
            mels += self.generate_mels([s.text for s in plan.segments[part]], plan.prompts[part],
                                       plan.reference_texts[part], total[part], chunk,
                                       video_features=None if plan.features is None else video_features[part],
                                       condition=condition)  # fmt: skip
        durations = [m.shape[0] / self.frames_per_second for m in mels]
        timings = [{"text": s.text, "speaker": s.speaker, "onset_s": onset, "offset_s": onset + d}
                   for s, onset, d in zip(plan.segments, plan.onsets_s, durations)]  # fmt: skip
        if output_type == "mel":
            audios = mels
        else:
            waves = self.vocode(mels, plan.rms, "np")
            track = assemble_track(list(zip(plan.onsets_s, waves)), plan.clip_s, self.sampling_rate)
            audios = [track if output_type == "np" else torch.from_numpy(track)]
        path = os.fspath(video) if isinstance(video, (str, os.PathLike)) else None
        return DeepDubberPipelineOutput(audios=audios, sampling_rate=self.sampling_rate, duration_in_s=durations,
                                        conclusion=plan.conclusion, reasoning=plan.reasoning, segments=timings,
                                        video=path)  # fmt: skip


def spread_text(tokenizer, text_ids, reference_texts, reference_frames, total_frames, reference_mels=None,
                new_mels=None):
    """Frames per token for average upsampling of `reference text + new text` (the ids of
    `_end_sentence(reference) + text`): the reference's tokens over the reference's frames, the rest over the new
    frames. The reference's tokens are found in its speech by forced alignment when the tokenizer has an
    aligner and `reference_mels` are given (as stage 2.1 trained on aligned speech); otherwise, and for the new
    text, frames are spread by the tokenizer's measured frame weights (evenly without them).

    Args:
        tokenizer ([`DeepDubberTokenizer`]): the tokenizer that made `text_ids`.
        text_ids (`torch.LongTensor` of shape `(b, nt)`): padded with -1.
        reference_texts (`list[str]`): the references' transcripts ("" or `None` without a reference).
        reference_frames, total_frames (`list[int]`): mel frames of the reference and of reference + new speech.
        reference_mels (`list[torch.Tensor]`, *optional*): the references' log-mels `(n_ref_i, c)`.
        new_mels (`list[torch.Tensor]`, *optional*): in training, the new speech's log-mels, to align the new text
            to it too.

    Returns:
        `torch.LongTensor` of shape `(b, nt)`, 0 over the padding.
    """
    rows = []
    for index, (ids, ref_text, n_ref, n) in enumerate(zip(text_ids, reference_texts, reference_frames, total_frames)):
        ids = ids[ids >= 0].cpu()
        # The reference's own tokens come first (phonemisation splits at the sentence end); the space after its
        # full stop, if any, is counted with the new text.
        k = len(tokenizer.tokens(_end_sentence(ref_text))) if ref_text else 0
        if k and reference_mels is not None:
            reference = tokenizer.align(ids[:k], reference_mels[index][: int(n_ref)].float().cpu())
        else:
            reference = tokenizer.durations(ids[:k], int(n_ref))
        if new_mels is not None:
            new = tokenizer.align(ids[k:], new_mels[index][: int(n - n_ref)].float().cpu())
        else:
            new = tokenizer.durations(ids[k:], int(n - n_ref))
        rows.append(torch.cat([reference, new]))
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)


__all__ = ["DeepDubberPipeline", "DeepDubberPipelineOutput", "spread_text"]
