"""The reasoner's processor: frame sampling, image processing, the chat template and the tokenizer.

A clip becomes the prompt of Figure 4 of the paper: one `Frame{i}: <image>` line per sampled frame, then the CoT
instruction (or the direct question in QA mode). The processor expands each `<image>` into as many placeholder
tokens as the projector makes per frame.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast, ProcessorMixin, SiglipImageProcessor

from .prompts import COT_INSTRUCTION, QA_QUESTION
from .cot import TAGS

IMAGE_TOKEN = "<image>"
# Fixed ids 0–6, so a tiny config's `image_token_id` / `pad_token_id` / `eos_token_id` hold for every tokenizer
# trained by `train_reasoner_tokenizer`.
SPECIAL_TOKENS = ("<|pad|>", "<|begin|>", "<|end|>", "<|unk|>", IMAGE_TOKEN, "<|user|>", "<|assistant|>")
# The CoT tags are ordinary added tokens (kept by `decode(skip_special_tokens=True)`), one id each, so the
# format is easy to learn and the `<CONCLUSION>` span easy to find.
TAG_TOKENS = tuple(f"<{tag}>" for tag in TAGS) + tuple(f"</{tag}>" for tag in TAGS)

# Frames are numbered from 1 in the prompt; a user turn may also be plain text (QA without frames, trl's format).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ '<|user|>\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- set frame = namespace(index=0) -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{%- set frame.index = frame.index + 1 -%}"
    "{{ 'Frame' ~ frame.index ~ ': <image>\\n' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}{{ item['text'] }}{%- endfor -%}{%- endif -%}"
    "{{ '<|end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)


def train_reasoner_tokenizer(texts, vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` (offline, with `tokenizers`) for the reasoner.

    The special tokens take ids 0–6 (:data:`SPECIAL_TOKENS`), the CoT tags one id each; the chat template is set.

    Args:
        texts (iterable of `str`):
            The training text: CoT responses, answers and instructions.
        vocab_size (`int`, *optional*, defaults to 1024):
            Size of the vocabulary, special tokens included.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<|pad|>",
        bos_token="<|begin|>",
        eos_token="<|end|>",
        unk_token="<|unk|>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        additional_special_tokens=[IMAGE_TOKEN, "<|user|>", "<|assistant|>"],
        padding_side="right",
    )
    wrapped.add_tokens(list(TAG_TOKENS))
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def sample_frame_indices(num_video_frames: int, num_frames: int) -> list:
    """The first frame, the last and the rest evenly between them (repeats when the clip is shorter)."""
    if num_video_frames < 1:
        raise ValueError("The video has no frames; pass a clip with at least one decodable frame.")
    return np.linspace(0, num_video_frames - 1, num_frames).round().astype(int).tolist()


def load_video_frames(video, num_frames: int, indices=None) -> torch.Tensor:
    """`num_frames` frames of `video` as `uint8` `(num_frames, 3, H, W)` (see :func:`sample_frame_indices`).

    `video` is a file path, encoded bytes, a `datasets` Video dict (`{"path", "bytes"}`), a torchcodec
    `VideoDecoder` (what `datasets` decodes a Video column to) or frames already decoded, `(T, 3, H, W)` or
    `(T, H, W, 3)` `uint8`. `indices`, when given, is called with the clip's frame count and returns the frame
    indices to take instead of the default sampling.
    """
    pick = indices or (lambda total: sample_frame_indices(total, num_frames))
    if isinstance(video, (torch.Tensor, np.ndarray)):
        frames = torch.as_tensor(video)
        if frames.ndim != 4 or 3 not in (frames.shape[1], frames.shape[-1]):
            raise ValueError(f"Decoded frames must be (T, 3, H, W) or (T, H, W, 3), got shape {tuple(frames.shape)}.")
        if frames.shape[1] != 3:
            frames = frames.permute(0, 3, 1, 2)
        return frames[pick(frames.shape[0])]

    video = open_video(video)
    num_video_frames = video.metadata.num_frames or 0
    return video.get_frames_at(pick(num_video_frames)).data


def open_video(video):
    """A torchcodec `VideoDecoder` for a file path, encoded bytes, a `datasets` Video dict or a decoder; a missing
    file or something that is not a video is named with the fix."""
    from torchcodec.decoders import VideoDecoder

    if isinstance(video, VideoDecoder):
        return video
    if isinstance(video, dict):
        video = video.get("bytes") or video.get("path")
    if isinstance(video, (str, os.PathLike)) and not os.path.isfile(video):
        raise FileNotFoundError(f"Video file {str(video)!r} not found; check the path.")
    try:
        return VideoDecoder(video if not isinstance(video, os.PathLike) else os.fspath(video))
    except Exception as error:
        raise ValueError(
            f"Could not decode {video if isinstance(video, str) else 'the given bytes'} as a video ({error}); "
            "pass an mp4/mkv/webm/avi file with a video stream."
        ) from error


def build_messages(num_frames: int, mode: str = "cot", response: str | None = None) -> list:
    """The chat of one clip: a user turn with `num_frames` frames and the instruction, optionally the response.

    Args:
        num_frames (`int`):
            Frames of the clip, each an image item (rendered `Frame{i}: <image>`).
        mode (`str`, *optional*, defaults to `"cot"`):
            `"cot"` asks for the four-section reasoning (the CoT instruction), `"qa"` for the direct answer.
        response (`str`, *optional*):
            The assistant's answer, for training.
    """
    if mode not in ("cot", "qa"):
        raise ValueError(f"mode must be 'cot' or 'qa', got {mode!r}.")
    instruction = COT_INSTRUCTION if mode == "cot" else QA_QUESTION
    frames = [{"type": "image"} for _ in range(num_frames)]
    messages = [{"role": "user", "content": [*frames, {"type": "text", "text": instruction}]}]
    if response is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
    return messages


class DeepDubberReasonerProcessor(ProcessorMixin):
    r"""Turns a clip into the reasoner's inputs: sampled frames → `pixel_values`, prompt → `input_ids`.

    Args:
        image_processor ([`~transformers.SiglipImageProcessor`]):
            Resizes each frame to the vision tower's square size and normalises it.
        tokenizer ([`~transformers.PreTrainedTokenizerFast`]):
            The text tokenizer; must know `<image>` (see :func:`train_reasoner_tokenizer`).
        chat_template (`str`, *optional*):
            Jinja template; defaults to :data:`CHAT_TEMPLATE` (`Frame{i}: <image>` lines, then the text).
        num_frames (`int`, *optional*, defaults to 10):
            Frames sampled per clip.
        image_seq_length (`int`, *optional*, defaults to 8):
            Placeholder tokens per frame; equal to the model config's `image_seq_length` (8 for the tiny default).

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf.reasoner import DeepDubberReasonerProcessor, train_reasoner_tokenizer
    >>> processor = DeepDubberReasonerProcessor.from_tokenizer(train_reasoner_tokenizer(["hello"], 300), num_frames=2)
    >>> inputs = processor.prepare_video(torch.zeros(8, 3, 128, 160, dtype=torch.uint8))
    >>> inputs["pixel_values"].shape, int((inputs["input_ids"] == processor.image_token_id).sum())
    (torch.Size([2, 3, 128, 128]), 16)
    ```
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template: str | None = None,
        num_frames: int = 10,
        image_seq_length: int = 8,
        **kwargs,
    ):
        self.num_frames = num_frames
        self.image_seq_length = image_seq_length
        self.image_token = IMAGE_TOKEN
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"The tokenizer has no {IMAGE_TOKEN!r} token; add it as a special token.")
        super().__init__(image_processor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE)

    @classmethod
    def from_tokenizer(cls, tokenizer, image_size: int = 128, num_frames: int = 10, image_seq_length: int = 8):
        """A processor with the default image processing (resize to `image_size`², scale to [-1, 1])."""
        image_processor = SiglipImageProcessor(
            size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
        return cls(image_processor, tokenizer, num_frames=num_frames, image_seq_length=image_seq_length)

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs) -> str:
        return self.image_token * self.image_seq_length

    def prepare_video(self, video, mode: str = "cot", return_tensors: str = "pt"):
        """Inputs for `generate()` from one clip (any form :func:`load_video_frames` takes)."""
        frames = load_video_frames(video, self.num_frames)
        prompt = self.apply_chat_template(build_messages(len(frames), mode), add_generation_prompt=True)
        return self(text=prompt, images=list(frames), return_tensors=return_tensors)

    def post_process_generation(self, generated_ids: torch.Tensor, prompt_length: int) -> list:
        """The response texts of `generate()`'s output (the prompt cut off)."""
        return self.batch_decode(generated_ids[:, prompt_length:], skip_special_tokens=True)


__all__ = [
    "CHAT_TEMPLATE",
    "build_messages",
    "DeepDubberReasonerProcessor",
    "IMAGE_TOKEN",
    "SPECIAL_TOKENS",
    "TAG_TOKENS",
    "load_video_frames",
    "open_video",
    "sample_frame_indices",
    "train_reasoner_tokenizer",
]
