"""`deepdubber demo`: dub a clip from a web page (Gradio).

    deepdubber demo                                  # the embedded default, on http://127.0.0.1:7860
    deepdubber demo --model runs/dubber --port 8000

The page takes a silent clip (uploaded, or the default's sample), the line (or an .srt of timed lines), optionally a
reference voice and its transcript, the three guidance scales, the number of steps and the seed. It shows the
reasoner's four sections and its conclusion, where the speech was placed, the mel-spectrogram of the dubbed track
and the dubbed clip, with a download button. Everything runs on this machine: nothing is fetched.

The work is done by :class:`DemoDubber`, which knows nothing of Gradio (its errors are `ValueError`s with a message
for the person at the page); :func:`build_demo` wires it to the page and :func:`launch_demo` serves it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

logger = logging.getLogger("deepdubber")

# Colour stops of the mel image, from quiet (dark blue) to loud (yellow).
_MEL_COLOURS = np.array([[13, 8, 64], [84, 28, 132], [182, 54, 121], [251, 135, 97], [252, 253, 191]], np.float32)


@dataclass
class DemoResult:
    """What the page shows after a dub."""

    video_path: str
    reasoning: str
    conclusion: str
    timing: str
    mel_image: np.ndarray
    seconds: float


def reasoning_markdown(reasoning: Optional[str]) -> str:
    """The reasoner's answer as Markdown: one titled paragraph per CoT section, or the answer as it came (a QA
    reasoner's, or one whose sections could not be read)."""
    from .reasoner.cot import split_sections

    if not reasoning:
        return "_No reasoning: this pipeline has no reasoner, so the speech is steered by the video alone._"
    sections = split_sections(reasoning)
    if not sections:
        return f"_The answer's sections could not be read ({sections.detail}); as it came:_\n\n```\n{reasoning}\n```"
    return "\n\n".join(f"**{tag.capitalize()}.** {content}" for tag, content in sections.items())


def mel_image(track: np.ndarray, sampling_rate: int, height_scale: int = 2) -> np.ndarray:
    """An RGB image `(height, frames, 3)` of the track's log-mel spectrogram, low frequencies at the bottom."""
    import torch

    from .audio import SAMPLING_RATE, log_mel_spectrogram, resample

    waveform = resample(torch.as_tensor(np.asarray(track, np.float32)), sampling_rate, SAMPLING_RATE)
    mel = log_mel_spectrogram(waveform).numpy()  # (bins, frames)
    low, high = np.percentile(mel, 5), mel.max()
    level = np.clip((mel - low) / max(high - low, 1e-6), 0.0, 1.0)[::-1]
    stops = np.linspace(0.0, 1.0, len(_MEL_COLOURS))
    image = np.stack([np.interp(level, stops, _MEL_COLOURS[:, c]) for c in range(3)], axis=-1)
    return np.repeat(image.astype(np.uint8), height_scale, axis=0)


def timing_text(segments: list[dict], durations: list[float], clip_seconds: float) -> str:
    """Where each line's speech lies in the clip, and how long the duration predictor made it."""
    lines = []
    for segment, seconds in zip(segments, durations):
        who = f"{segment['speaker']}: " if segment.get("speaker") else ""
        lines.append(
            f"{seconds:.2f} s of speech at {segment['onset_s']:.2f}-{segment['offset_s']:.2f} s: {who}{segment['text']}"
        )
    lines.append(f"(the clip lasts {clip_seconds:.2f} s)")
    return "\n".join(lines)


class DemoDubber:
    """Loads a dubbing pipeline once and dubs one clip per call, keeping each result in its own folder.

    Args:
        model (`str`, *optional*): a pipeline folder; by default the embedded `checkpoints/deepdubber-tiny`.
        output_root (`str`, *optional*): where the dubbed clips go (a new temporary folder by default).
    """

    def __init__(self, model: Optional[str] = None, output_root: Optional[str] = None):
        from .cli import DEFAULT_MODEL, load_pipeline

        self.model = model or str(DEFAULT_MODEL)
        self.pipe = load_pipeline(model, "", dubbing=True)
        if getattr(self.pipe, "controlnet", None) is None:
            raise ValueError(
                f"{self.model!r} is a speech-only pipeline (no ControlNet): the demo dubs video, so pass the folder "
                "examples/train_controlnet.py saved (or the embedded default)."
            )
        self.output_root = output_root or tempfile.mkdtemp(prefix="deepdubber-demo-")
        os.makedirs(self.output_root, exist_ok=True)
        sample = Path(self.model) / "sample"
        self.sample = (str(sample / "clip.mp4"), (sample / "line.txt").read_text().strip()) if (
            (sample / "clip.mp4").is_file() and (sample / "line.txt").is_file()
        ) else None  # fmt: skip

    def dub(self, video: Optional[str], line: Optional[str] = None, subtitles: Optional[str] = None,
            reference_audio: Optional[str] = None, reference_text: Optional[str] = None,
            video_guidance_scale: float = 3.0, conclusion_guidance_scale: float = 3.0,
            text_guidance_scale: float = 3.0, num_inference_steps: int = 32, seed: int = 0,
            progress: Optional[Callable[[float, str], None]] = None) -> DemoResult:  # fmt: skip
        """Dub `video` with `line` (or the cues of the .srt `subtitles`). Bad input raises `ValueError` (or
        `FileNotFoundError`) with a message meant for the page."""
        import torch

        progress = progress or (lambda fraction, desc: None)
        start = time.perf_counter()
        line = (line or "").strip()
        reference_text = (reference_text or "").strip()
        if not video:
            raise ValueError("No clip: upload a silent video (mp4, mkv, mov or webm), or pick the sample below.")
        if not os.path.isfile(video):
            raise FileNotFoundError(f"The clip {video!r} is gone: upload it again.")
        if line and subtitles:
            raise ValueError("Give either the line or an .srt file, not both: clear one of them.")
        if not line and not subtitles:
            raise ValueError("The line is empty: type the words to speak (or upload an .srt file of timed lines).")
        if subtitles and not str(subtitles).lower().endswith(".srt"):
            raise ValueError(f"{os.path.basename(subtitles)!r} is not an .srt file: upload subtitles in SRT format.")
        if reference_audio and not reference_text:
            raise ValueError("The reference voice needs its transcript: type what is said in the recording.")
        if reference_text and not reference_audio:
            raise ValueError("A transcript was given without a reference voice: upload the recording, or clear it.")
        steps = int(num_inference_steps)
        if not 1 <= steps <= 256:
            raise ValueError(f"The number of steps must be between 1 and 256, not {steps}.")

        progress(0.05, "Reasoning over the frames")
        conclusion, reasoning = self.pipe.conclude(video)
        progress(0.2, "Generating the speech")
        out = self.pipe(
            line or None, video=video, subtitles=subtitles, reference_audio=reference_audio or None,
            reference_text=reference_text or None, conclusion=conclusion, use_conclusion=conclusion is not None,
            video_guidance_scale=float(video_guidance_scale),
            conclusion_guidance_scale=float(conclusion_guidance_scale),
            text_guidance_scale=float(text_guidance_scale), num_inference_steps=steps,
            generator=torch.Generator().manual_seed(int(seed)),
        )  # fmt: skip
        progress(0.9, "Muxing the dubbed track into the clip")
        folder = tempfile.mkdtemp(prefix="dub-", dir=self.output_root)
        name = Path(video).stem
        video_path = os.path.join(folder, f"{name}-dubbed.mp4")
        out.save_video(video_path)
        track = np.asarray(out.audios[0], np.float32)
        clip_seconds = len(track) / out.sampling_rate
        return DemoResult(
            video_path=video_path,
            reasoning=reasoning_markdown(reasoning),
            conclusion=conclusion.to_text() if conclusion is not None else "none (the speech follows the video alone)",
            timing=timing_text(out.segments, out.duration_in_s, clip_seconds),
            mel_image=mel_image(track, out.sampling_rate),
            seconds=time.perf_counter() - start,
        )


def _import_gradio():
    try:
        import gradio as gr
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "the web demo needs Gradio: pip install 'deepdubber-hf[demo]' (or make test, which installs it)."
        ) from error
    return gr


def build_demo(dubber: DemoDubber):
    """The Gradio page around `dubber`."""
    gr = _import_gradio()

    def run(video, line, subtitles, reference_audio, reference_text, video_scale, conclusion_scale, text_scale,
            steps, seed, progress=gr.Progress(track_tqdm=True)):  # fmt: skip
        try:
            result = dubber.dub(
                video, line, subtitles, reference_audio, reference_text, video_scale, conclusion_scale, text_scale,
                steps, seed, progress=lambda fraction, desc: progress(fraction, desc=desc),
            )  # fmt: skip
        except (ValueError, FileNotFoundError, RuntimeError) as error:
            logger.info(f"demo: refused a request: {error}")
            raise gr.Error(str(error), title="Cannot dub this") from error
        except Exception as error:  # a bug, not bad input: say so in the page, log the traceback, keep serving
            logger.exception("demo: dubbing failed")
            raise gr.Error(f"Dubbing failed ({type(error).__name__}: {error}); the log has the details.",
                           title="Something went wrong") from error  # fmt: skip
        status = f"Dubbed in {result.seconds:.1f} s."
        return (result.video_path, result.reasoning, result.conclusion, result.timing, result.mel_image,
                gr.DownloadButton(value=result.video_path, visible=True), status)  # fmt: skip

    with gr.Blocks(title="DeepDubber", analytics_enabled=False) as demo:
        gr.Markdown(
            "# DeepDubber\nDrop a silent clip, type the line, press **Dub**: the reasoner looks at the frames and "
            "decides the delivery (scene type, speaker, emotion), the speech generator speaks the line timed to "
            "the mouths, and the track is muxed into the clip."
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Silent clip", sources=["upload"], height=300, elem_id="clip")
                line = gr.Textbox(label="Line to speak", lines=2, elem_id="line",
                                  placeholder="Where did you put the map?")  # fmt: skip
                subtitles = gr.File(label="…or timed lines (.srt)", file_types=[".srt"], elem_id="subtitles")
                with gr.Accordion("Reference voice (optional)", open=False):
                    reference_audio = gr.Audio(label="Voice to clone", sources=["upload"], type="filepath",
                                               elem_id="reference-audio")  # fmt: skip
                    reference_text = gr.Textbox(label="What is said in it", elem_id="reference-text")
                with gr.Accordion("Settings", open=False):
                    video_scale = gr.Slider(0.0, 8.0, value=3.0, step=0.5, label="Video guidance (λ_V)")
                    conclusion_scale = gr.Slider(0.0, 8.0, value=3.0, step=0.5, label="Conclusion guidance (λ_C)")
                    text_scale = gr.Slider(0.0, 8.0, value=3.0, step=0.5, label="Text guidance (λ_T)")
                    steps = gr.Slider(4, 64, value=32, step=1, label="Sampling steps", elem_id="steps")
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                dub = gr.Button("Dub", variant="primary", elem_id="dub")
                if dubber.sample is not None:
                    gr.Examples([list(dubber.sample)], inputs=[video, line], label="Sample clip")
            with gr.Column():
                dubbed = gr.Video(label="Dubbed clip", interactive=False, height=300, elem_id="dubbed")
                download = gr.DownloadButton("Download the dubbed clip", visible=False, elem_id="download")
                status = gr.Markdown(elem_id="status")
                conclusion = gr.Textbox(label="Conclusion", interactive=False, elem_id="conclusion")
                timing = gr.Textbox(label="Predicted duration and placement", lines=2, interactive=False,
                                    elem_id="timing")  # fmt: skip
                mel = gr.Image(label="Mel-spectrogram of the dubbed track", interactive=False, elem_id="mel")
                gr.Markdown("### Reasoning")
                reasoning = gr.Markdown(elem_id="reasoning")
        dub.click(
            run,
            inputs=[video, line, subtitles, reference_audio, reference_text, video_scale, conclusion_scale,
                    text_scale, steps, seed],
            outputs=[dubbed, reasoning, conclusion, timing, mel, download, status],
        )  # fmt: skip
    return demo


def launch_demo(model: Optional[str] = None, host: str = "127.0.0.1", port: Optional[int] = None,
                block: bool = True):  # fmt: skip
    """Load the pipeline, build the page and serve it on `host:port` (7860, or the next free port, by default).
    Returns the running Gradio app when `block` is False."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    gr = _import_gradio()
    dubber = DemoDubber(model)
    demo = build_demo(dubber)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(
        server_name=host, server_port=port, share=False, prevent_thread_lock=True, quiet=True,
        allowed_paths=[dubber.output_root], footer_links=["gradio"], theme=gr.themes.Default(),
    )  # fmt: skip
    print(f"DeepDubber demo on {url} (model: {dubber.model}); press Ctrl+C to stop.", flush=True)
    if not block:
        return demo
    try:
        demo.block_thread()
    finally:
        shutil.rmtree(dubber.output_root, ignore_errors=True)
    return demo


__all__ = ["DemoDubber", "DemoResult", "build_demo", "launch_demo", "mel_image", "reasoning_markdown", "timing_text"]
