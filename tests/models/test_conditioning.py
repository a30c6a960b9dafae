import pytest
import torch

from deepdubber_hf.models.conditioning import (
    VIDEO_FPS,
    build_condition_tokenizer,
    clip_pixels,
    encode_conclusions,
    encode_frames,
    features_between,
    load_frames_at_rate,
    resample_features,
    tiny_condition_encoder,
    tiny_video_encoder,
)
from deepdubber_hf.reasoner.cot import DubbingConclusion


def test_frames_at_ten_per_second_span_the_clip(clip):
    path, row = clip
    frames, duration = load_frames_at_rate(path)
    assert frames.dtype == torch.uint8 and frames.shape[1:] == (3, row["height"], row["width"])
    assert abs(duration - row["duration_s"]) < 0.05
    assert frames.shape[0] == int(duration * VIDEO_FPS + 1e-6)
    with pytest.raises(ValueError, match="as a video"):
        load_frames_at_rate(b"not a video at all")


def test_video_features_follow_the_frames_and_reach_the_mel_rate(clip):
    torch.manual_seed(0)
    encoder, processor = tiny_video_encoder()
    frames, duration = load_frames_at_rate(clip[0])
    features = encode_frames(encoder.eval(), processor, frames, batch_size=7)  # several chunks
    assert features.shape == (frames.shape[0], encoder.config.projection_dim)
    assert not torch.allclose(features[0], encode_frames(encoder, processor, 255 - frames[:1])[0])
    mel_frames = int(duration * 24_000 / 256)
    resampled = resample_features(features[None], mel_frames)
    assert resampled.shape == (1, mel_frames, encoder.config.projection_dim)
    assert torch.allclose(resampled[0, 0], features[0], atol=1e-5)  # upsampled: the first mel frame is frame 0
    assert torch.allclose(resampled.mean(1), features.mean(0, keepdim=True), atol=0.1 * features.abs().max())


def test_conclusions_are_tokenised_without_unknown_words_and_encoded(tmp_path):
    tokenizer = build_condition_tokenizer()
    texts = [DubbingConclusion("monologue", 1, "female", "young", "happy").to_text(),
             DubbingConclusion("narration", 0, "male", "elderly", "sad").to_text()]  # fmt: skip
    ids = tokenizer(texts)["input_ids"]
    assert all(tokenizer.unk_token_id not in row and row[-1] == tokenizer.eos_token_id for row in ids)
    assert ids[0] != ids[1]
    tokenizer.save_pretrained(tmp_path / "tok")
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path / "tok")(texts)["input_ids"] == ids
    torch.manual_seed(0)
    encoder = tiny_condition_encoder(tokenizer).eval()
    with torch.no_grad():
        hidden, mask = encode_conclusions(encoder, tokenizer, texts)
    assert hidden.shape[:2] == mask.shape and hidden.shape[-1] == encoder.config.d_model
    assert not torch.allclose(hidden[0, :3], hidden[1, :3])


def test_batched_pixels_match_the_clip_image_processor(clip):
    from transformers import CLIPImageProcessor

    frames, _ = load_frames_at_rate(clip[0])
    frames = frames[:6]
    _, tiny = tiny_video_encoder()
    for processor in (tiny, CLIPImageProcessor()):  # squeezed to a square; shortest edge then centre crop (CLIP's)
        expected = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        pixels = clip_pixels(frames, processor)
        assert pixels.shape == expected.shape
        assert (pixels - expected).abs().max() < 0.02  # one grey level of 255, after normalisation


def test_features_between_sample_a_stretch_of_the_clip():
    features = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 3)  # row i holds i, at i / 10 s
    stretch = features_between(features, 0.2, 0.6, num_frames=4)  # centres 0.25, 0.35, 0.45, 0.55 s
    assert torch.allclose(stretch[:, 0], torch.tensor([2.5, 3.5, 4.5, 5.5]))
    assert torch.allclose(features_between(features, 0.85, 2.0, 2)[:, 0], torch.tensor([9.0, 9.0]))  # held
    assert features_between(features, 0.0, 1.0, 0).shape == (0, 3)


def test_motion_channels_hold_the_difference_from_the_previous_frame(clip):
    frames, _ = load_frames_at_rate(clip[0])
    encoder, processor = tiny_video_encoder()
    assert encoder.config.num_channels == 6
    still = torch.cat([frames[:1].expand(3, -1, -1, -1), frames[:5]])  # a held frame, then the clip moving
    pixels = clip_pixels(still, processor, num_channels=6)
    assert torch.equal(pixels[:, :3], clip_pixels(still, processor))
    assert pixels[:4, 3:].abs().max() == 0  # nothing moves over the held frames (and the first has no previous)
    assert torch.allclose(pixels[5, 3:], pixels[5, :3] - pixels[4, :3])
    with pytest.raises(ValueError, match="3 \\(RGB\\) or 6"):
        clip_pixels(frames, processor, num_channels=4)
    # Encoded in chunks, each chunk's first difference is still taken against the frame before it.
    torch.manual_seed(0)
    encoder = encoder.eval()
    assert torch.allclose(encode_frames(encoder, processor, frames, batch_size=4),
                          encode_frames(encoder, processor, frames, batch_size=64), atol=1e-5)  # fmt: skip
