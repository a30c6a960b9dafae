"""Running the reasoner on clips: batched `generate()` from videos to CoT texts and parsed conclusions."""

from __future__ import annotations

import os

import torch
from tqdm.auto import tqdm

from .cot import parse_conclusion, parse_cot
from .processing_reasoner import build_messages, load_video_frames


def load_reasoner(path: str):
    """The model (float32) and processor saved in `path` by `examples/train_sft.py` / `examples/train_mpo.py`."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if not os.path.isdir(path):
        raise FileNotFoundError(f"reasoner folder {path!r} not found: pass the output folder of examples/train_sft.py.")
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    return model, AutoProcessor.from_pretrained(path)


def reason(
    model,
    processor,
    videos: list,
    mode: str = "cot",
    batch_size: int = 8,
    max_new_tokens: int = 320,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    num_frames: int | None = None,
    generator_seed: int | None = None,
    show_progress: bool = False,
) -> list:
    """The reasoner's responses to `videos`: a list (per video) of `num_return_sequences` texts.

    Args:
        model ([`~transformers.PreTrainedModel`]):
            A `DeepDubberReasonerForConditionalGeneration` or another vision-language model that takes the same
            prompt (frames as images).
        processor ([`~transformers.ProcessorMixin`]):
            Its processor (chat template with image items).
        videos (`list`):
            Clips in any form :func:`~deepdubber_hf.reasoner.load_video_frames` takes.
        mode (`str`, *optional*, defaults to `"cot"`):
            `"cot"` for the four-section reasoning, `"qa"` for the direct answer.
        batch_size (`int`, *optional*, defaults to 8):
            Clips per `generate()` call.
        max_new_tokens (`int`, *optional*, defaults to 320):
            Length limit of a response.
        do_sample (`bool`, *optional*, defaults to `False`):
            Sample (at `temperature`) instead of greedy decoding.
        num_return_sequences (`int`, *optional*, defaults to 1):
            Responses per clip (sampling).
        num_frames (`int`, *optional*):
            Frames per clip; defaults to the processor's `num_frames` (or 10).
        generator_seed (`int`, *optional*):
            Seed of torch's generator before sampling, for repeatable samples.
        show_progress (`bool`, *optional*, defaults to `False`):
            Show a progress bar over the clips.
    """
    num_frames = num_frames or getattr(processor, "num_frames", 10)
    tokenizer = getattr(processor, "tokenizer", processor)
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues every row from its last prompt token
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    responses = []
    model.eval()
    try:
        bar = tqdm(total=len(videos), desc="Reasoning", unit="clip", disable=not show_progress)
        for start in range(0, len(videos), batch_size):
            frames = [list(load_video_frames(video, num_frames)) for video in videos[start : start + batch_size]]
            prompts = [
                processor.apply_chat_template(build_messages(len(f), mode), add_generation_prompt=True)
                for f in frames
            ]
            inputs = processor(text=prompts, images=frames, padding=True, return_tensors="pt").to(model.device)
            with torch.no_grad():
                output = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    temperature=temperature if do_sample else None,
                    top_k=None,
                    top_p=None,
                    num_return_sequences=num_return_sequences,
                    pad_token_id=tokenizer.pad_token_id,
                )
            texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            for i in range(len(frames)):
                responses.append([t.strip() for t in texts[i * num_return_sequences : (i + 1) * num_return_sequences]])
            bar.update(len(frames))
        bar.close()
    finally:
        tokenizer.padding_side = padding_side
    return responses


def parse_response(text: str, mode: str = "cot"):
    """A response's conclusion (`DubbingConclusion`) or the reason it has none (`CoTFailure`)."""
    return parse_cot(text) if mode == "cot" else parse_conclusion(text)


__all__ = ["load_reasoner", "parse_response", "reason"]
