"""The conditions of stage 2.2 (eq. 17): video features `V_l` from a CLIP vision model and the conclusion `C_v`
from a T5 encoder.

Shape legend: ``f`` video frames at :data:`VIDEO_FPS`, ``n`` mel frames, ``m`` conclusion tokens, ``d`` width.

Both encoders are plain transformers models, so real weights load where a user has them
(`openai/clip-vit-large-patch14` with its `CLIPImageProcessor`, `t5-small` with its tokenizer); the tiny default
builds small ones from the configurations here, and a word-level tokenizer over the closed vocabulary of
conclusions (:func:`build_condition_tokenizer`), since no T5 vocabulary ships offline.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from ..data.schema import AGES, EMOTIONS, GENDERS, SCENE_TYPES

VIDEO_FPS = 10  # video frames per second fed to the video encoder (the paper samples 10 fps for CLIP)

TINY_CLIP_VISION_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "projection_dim": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 96,  # a mouth of the corpus (12 x 8 pixels in a 160 x 128 frame) keeps 7 x 6 pixels
    "patch_size": 12,
    # Each frame and its difference from the previous one (see `clip_pixels`): a CLIP this small, trained from
    # scratch, tells an open mouth from a closed one in 65 % of held-out frames from the frame alone and in 73 % with
    # the difference, after 600 steps (benchmarks/benchmark_video_channels.py, benchmarks/RESULTS.md).
    "num_channels": 6,
}
TINY_T5_CONFIG = {
    "d_model": 64,
    "d_kv": 16,
    "d_ff": 128,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 32,
    "dropout_rate": 0.0,
    "feed_forward_proj": "gated-gelu",
}


def load_frames_at_rate(video, fps: float = VIDEO_FPS) -> tuple[torch.Tensor, float]:
    """The frames of `video` at `fps` (`uint8`, `(f, 3, H, W)`, frame `i` shown at `i / fps` seconds) and the
    video's duration in seconds. `video` is anything `open_video` takes."""
    from ..reasoner.processing_reasoner import open_video

    decoder = open_video(video)
    meta = decoder.metadata
    count = meta.num_frames or 0
    if count == 0:
        raise ValueError("The video has no frames: pass a clip with at least one video frame.")
    rate = meta.average_fps or fps
    duration = meta.duration_seconds or count / rate
    times = torch.arange(max(1, int(duration * fps + 1e-6))) / fps
    indices = (times * rate).round().long().clamp(max=count - 1).tolist()
    return decoder.get_frames_at(indices).data, float(duration)


def clip_pixels(frames: torch.Tensor, image_processor, num_channels: int = 3) -> torch.Tensor:
    """`uint8` frames `(f, 3, H, W)` of one video → the video encoder's pixels `(f, num_channels, h, w)`, as
    `image_processor` (a CLIP image processor) prepares them, in one batched tensor operation: resize (to `size`'s
    height and width, or its shortest edge then the centre `crop_size`), rescale, normalise. Several times faster
    than the per-image processor on video, and the same at training and inference.

    With `num_channels=6` (the tiny default encoder's input) each frame is followed by its difference from the
    frame before it (zero for the first): what moves, the mouths, stands out. A 3-channel CLIP (any pretrained
    one) gets the frames alone."""
    if num_channels not in (3, 6):
        raise ValueError(f"a video encoder takes 3 (RGB) or 6 (RGB and its motion) channels, not {num_channels}.")
    size, crop = image_processor.size, image_processor.crop_size
    get = (lambda d, k: d.get(k)) if isinstance(size, dict) else (lambda d, k: getattr(d, k, None))
    height, width = frames.shape[-2:]
    if get(size, "shortest_edge"):
        scale = get(size, "shortest_edge") / min(height, width)
        target = (max(1, round(height * scale)), max(1, round(width * scale)))
    else:
        target = (get(size, "height"), get(size, "width"))
    pixels = F.interpolate(frames.float(), size=target, mode="bicubic", antialias=True).clamp(0, 255).round()
    if getattr(image_processor, "do_center_crop", False) and crop is not None:
        top = (pixels.shape[-2] - get(crop, "height")) // 2
        left = (pixels.shape[-1] - get(crop, "width")) // 2
        pixels = pixels[..., top : top + get(crop, "height"), left : left + get(crop, "width")]
    pixels = pixels * image_processor.rescale_factor
    mean = torch.tensor(image_processor.image_mean, dtype=pixels.dtype)[:, None, None]
    std = torch.tensor(image_processor.image_std, dtype=pixels.dtype)[:, None, None]
    pixels = (pixels - mean) / std
    if num_channels == 6:
        pixels = torch.cat([pixels, pixels - torch.cat([pixels[:1], pixels[:-1]])], dim=1)
    return pixels


@torch.no_grad()
def encode_frames(video_encoder, image_processor, frames: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """CLIP image embeddings `(f, projection_dim)` of the `uint8` frames `(f, 3, H, W)` of one video."""
    device, dtype = video_encoder.device, video_encoder.dtype
    channels = video_encoder.config.num_channels
    chunks = []
    for start in range(0, frames.shape[0], batch_size):
        first = max(0, start - 1)  # the frame before the chunk: the first difference is taken against it
        pixels = clip_pixels(frames[first : start + batch_size], image_processor, channels)[start - first :]
        chunks.append(video_encoder(pixel_values=pixels.to(device, dtype)).image_embeds)
    return torch.cat(chunks)


def resample_features(features: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Features `(b, f, d)` over a clip → `(b, num_frames, d)` over the same span (linear interpolation): from the
    video's frame rate to the mel frame rate."""
    if features.shape[1] == num_frames:
        return features
    return F.interpolate(features.transpose(1, 2), size=num_frames, mode="linear", align_corners=False).transpose(1, 2)


def features_between(features: torch.Tensor, start_s: float, end_s: float, num_frames: int,
                     fps: float = VIDEO_FPS) -> torch.Tensor:
    """Features `(f, d)` at `fps` (row `i` at `i / fps` seconds) → `(num_frames, d)` at the centres of `num_frames`
    equal steps from `start_s` to `end_s` (linear interpolation, held at the ends): the video under a stretch of
    speech, at the mel frame rate."""
    if num_frames <= 0:
        return features.new_zeros(0, features.shape[-1])
    centres = start_s + (torch.arange(num_frames, device=features.device, dtype=torch.float64) + 0.5) * (
        (end_s - start_s) / num_frames
    )
    position = (centres * fps).clamp(0, features.shape[0] - 1)
    low = position.floor().long()
    high = (low + 1).clamp(max=features.shape[0] - 1)
    weight = (position - low).to(features.dtype)[:, None]
    return features[low] * (1 - weight) + features[high] * weight


def video_under_speech(features: torch.Tensor, onset_s: float, offset_s: float, num_reference_frames: int,
                       num_speech_frames: int, fps: float = VIDEO_FPS) -> torch.Tensor:
    """The ControlNet's video input for one prompt, `(num_reference_frames + num_speech_frames, d)` at the mel rate:
    zeros under the reference voice, then the clip's features `(f, d)` from `onset_s` to `offset_s`."""
    under = features_between(features, onset_s, offset_s, num_speech_frames, fps)
    return torch.cat([under.new_zeros(num_reference_frames, under.shape[-1]), under])


def condition_words() -> list[str]:
    """Every word of every `DubbingConclusion.to_text()` (scene types, genders, ages, emotions, counts, labels)."""
    from ..reasoner.cot import DubbingConclusion

    words = set()
    for scene, gender, age, emotion, speakers in itertools.product(SCENE_TYPES, GENDERS, AGES, EMOTIONS, range(4)):
        text = DubbingConclusion(scene, speakers, gender, age, emotion).to_text()
        words.update(text.replace(";", " ; ").replace(":", " : ").split())
    return sorted(words)


def build_condition_tokenizer():
    """A word-level `PreTrainedTokenizerFast` for conclusions: `<pad>` 0, `</s>` 1 (T5's ids), `<unk>` 2, then the
    words of :func:`condition_words`; it appends `</s>` as T5's tokenizer does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in condition_words():
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_video_encoder(image_size: int | None = None):
    """A tiny random CLIP vision model with projection and its image processor. The processor squeezes the whole
    frame to the square input (no centre crop, which would cut off characters at the sides)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(**{**TINY_CLIP_VISION_CONFIG, **({"image_size": image_size} if image_size else {})})
    size = config.image_size
    processor = CLIPImageProcessor(size={"height": size, "width": size}, do_center_crop=False,
                                   crop_size={"height": size, "width": size})  # fmt: skip
    return CLIPVisionModelWithProjection(config), processor


def tiny_condition_encoder(tokenizer):
    """A tiny random T5 encoder for `tokenizer`'s vocabulary."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, **TINY_T5_CONFIG)  # fmt: skip
    return T5EncoderModel(config)


def encode_conclusions(condition_encoder, tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 encodings `(b, m, d_model)` of conclusion texts (`DubbingConclusion.to_text()`) and their mask `(b, m)`."""
    batch = tokenizer(list(texts), padding=True, return_tensors="pt").to(condition_encoder.device)
    hidden = condition_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return hidden, batch["attention_mask"].bool()


__all__ = [
    "TINY_CLIP_VISION_CONFIG",
    "TINY_T5_CONFIG",
    "VIDEO_FPS",
    "build_condition_tokenizer",
    "clip_pixels",
    "condition_words",
    "encode_conclusions",
    "encode_frames",
    "features_between",
    "load_frames_at_rate",
    "resample_features",
    "tiny_condition_encoder",
    "tiny_video_encoder",
    "video_under_speech",
]
