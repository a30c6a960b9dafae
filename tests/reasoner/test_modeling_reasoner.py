"""The reasoner model and processor: Auto classes, save/load, generation on a decoded clip, a training step."""

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from deepdubber_hf.data.corpus import generate_clip
from deepdubber_hf.reasoner import (
    DeepDubberReasonerConfig,
    DeepDubberReasonerForConditionalGeneration,
    DeepDubberReasonerProcessor,
    build_messages,
    load_video_frames,
    sample_frame_indices,
    train_reasoner_tokenizer,
)
from deepdubber_hf.reasoner.configuration_reasoner import TINY_RESNET_VISION_CONFIG
from deepdubber_hf.reasoner.generation import reason
from deepdubber_hf.reasoner.modeling_reasoner import clip_statistics, pool_regions

NUM_FRAMES = 3


@pytest.fixture(scope="module")
def processor(clip):
    tokenizer = train_reasoner_tokenizer([clip[1]["cot"], clip[1]["answer"]], vocab_size=400)
    return DeepDubberReasonerProcessor.from_tokenizer(tokenizer, num_frames=NUM_FRAMES)


def tiny_model(processor, seed=0):
    torch.manual_seed(seed)
    tokenizer = processor.tokenizer
    config = DeepDubberReasonerConfig.tiny(
        vocab_size=len(tokenizer),
        num_frames=NUM_FRAMES,
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id},
        vision_config={"model_type": "convnextv2", "hidden_sizes": [8, 16, 32], "depths": [1, 1, 1],
                       "num_stages": 3, "patch_size": 4, "image_size": 128},
    )  # fmt: skip
    return DeepDubberReasonerForConditionalGeneration(config)


def test_frame_sampling_keeps_first_and_last():
    assert sample_frame_indices(50, 5) == [0, 12, 24, 37, 49]
    assert sample_frame_indices(2, 4) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="no frames"):
        sample_frame_indices(0, 4)


def test_load_video_frames_decodes_the_file(clip):
    path, row = clip
    frames = load_video_frames(path, NUM_FRAMES)
    assert frames.shape == (NUM_FRAMES, 3, row["height"], row["width"]) and frames.dtype == torch.uint8
    assert frames.float().std() > 5  # real pixels, not a blank
    from_tensor = load_video_frames(frames.permute(0, 2, 3, 1).numpy(), 2)  # (T, H, W, 3) input
    assert torch.equal(from_tensor, frames[[0, -1]])
    totals = []
    chosen = load_video_frames(path, 2, indices=lambda total: totals.append(total) or [1, total - 2])
    everything = load_video_frames(path, totals[0])  # every frame, in order
    assert torch.equal(chosen, everything[[1, totals[0] - 2]])


def test_bad_videos_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        load_video_frames(str(tmp_path / "missing.mp4"), 2)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(ValueError, match="video stream"):
        load_video_frames(str(text), 2)


def test_prompt_has_one_frame_line_per_frame(processor, clip):
    prompt = processor.apply_chat_template(build_messages(NUM_FRAMES), add_generation_prompt=True)
    assert [line for line in prompt.splitlines() if line.startswith("Frame")] == [
        f"Frame{i}: <image>" for i in range(1, NUM_FRAMES + 1)
    ]
    inputs = processor.prepare_video(clip[0])
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == NUM_FRAMES * processor.image_seq_length
    assert inputs["pixel_values"].shape == (NUM_FRAMES, 3, 128, 128)
    # The CoT tags are single tokens that survive decoding.
    ids = processor.tokenizer("<CONCLUSION>scene type</CONCLUSION>", add_special_tokens=False)["input_ids"]
    assert processor.tokenizer.decode(ids, skip_special_tokens=True) == "<CONCLUSION>scene type</CONCLUSION>"


def test_save_load_round_trip_through_auto_classes(processor, clip, tmp_path):
    model = tiny_model(processor).eval()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "deepdubber_reasoner"
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, DeepDubberReasonerForConditionalGeneration)
    assert isinstance(loaded_processor, DeepDubberReasonerProcessor)
    inputs = processor.prepare_video(clip[0])
    again = loaded_processor.prepare_video(clip[0])
    assert torch.equal(inputs["input_ids"], again["input_ids"])
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, loaded(**again).logits, atol=0)


def test_generate_on_a_video_writes_text(processor, clip):
    model = tiny_model(processor)
    texts = reason(model, processor, [clip[0], clip[0]], max_new_tokens=6)
    assert len(texts) == 2 and texts[0] == texts[1] and isinstance(texts[0][0], str)
    sampled = reason(model, processor, [clip[0]], max_new_tokens=6, do_sample=True, num_return_sequences=3)
    assert len(sampled[0]) == 3


@pytest.mark.parametrize("tower", ["convnextv2", "siglip_vision_model", "resnet"])
def test_the_answer_depends_on_the_frames(processor, clip, tower):
    torch.manual_seed(0)
    vision_config = None
    if tower == "siglip_vision_model":
        vision_config = {"model_type": tower, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "image_size": 128, "patch_size": 16, "vision_use_head": False}  # fmt: skip
    if tower == "resnet":  # stride 4 · 2 · 2 = 16, as the default ConvNeXt's
        vision_config = {"model_type": tower, **TINY_RESNET_VISION_CONFIG}
    config = DeepDubberReasonerConfig.tiny(vocab_size=len(processor.tokenizer), num_frames=NUM_FRAMES,
                                           **({"vision_config": vision_config} if vision_config else {}))  # fmt: skip
    assert config.image_seq_length == processor.image_seq_length
    model = DeepDubberReasonerForConditionalGeneration(config).eval()
    inputs = processor.prepare_video(clip[0])
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1]
        flipped = model(**{**inputs, "pixel_values": inputs["pixel_values"].flip(-1)}).logits[:, -1]
    assert not torch.allclose(logits, flipped)


def test_pooled_tokens_follow_the_feature_wherever_it_is():
    """One hot cell in the feature grid: the whole-frame token and the strip it lies in see it, the other strips
    do not; moving it within its strip leaves every pooled token unchanged, moving it across strips does not."""
    grid = torch.zeros(1, 4, 12, 12)
    grid[0, 2, 5, 1] = 3.0  # channel 2, left third
    pooled = pool_regions(grid, 3)
    assert pooled.shape == (1, 4, 8)
    assert pooled[0, :, 4 + 2].tolist() == [3.0, 3.0, 0.0, 0.0]  # the maxima of channel 2: frame, left, middle, right
    moved = torch.zeros_like(grid)
    moved[0, 2, 9, 3] = 3.0  # still in the left third
    assert torch.equal(pool_regions(moved, 3), pooled)
    assert pool_regions(grid.flip(-1), 3)[0, :, 4 + 2].tolist() == [3.0, 0.0, 0.0, 3.0]

    config = DeepDubberReasonerConfig.tiny(vocab_size=300)
    assert (config.pooled_regions, config.image_seq_length) == (3, 4 + 1 + 3)
    assert DeepDubberReasonerConfig.tiny(vocab_size=300, pooled_regions=0).image_seq_length == 4
    frames = torch.zeros(config.num_frames, 3, 128, 128)
    features = DeepDubberReasonerForConditionalGeneration(config).model.get_image_features(frames)
    assert features.pooler_output.shape == (config.num_frames, config.image_seq_length, config.text_config.hidden_size)
    with pytest.raises(Exception, match="pooled_regions must be 0"):  # the config's validation wraps the ValueError
        DeepDubberReasonerConfig.tiny(vocab_size=300, pooled_regions=-1)


def test_clip_statistics_read_each_clip_alone():
    """Each frame's pooled features gain its own clip's mean and spread over the frames: a region that changes from
    frame to frame (a talking mouth) has a spread, a still one has none, and clips in one batch do not mix."""
    pooled = torch.zeros(6, 2, 1)  # two clips of three frames, two regions, one channel
    pooled[:3, 0, 0] = torch.tensor([0.0, 2.0, 4.0])  # clip 1, region 0 changes
    pooled[3:, 1, 0] = 5.0  # clip 2, region 1 is constant
    stats = clip_statistics(pooled, 3)
    assert stats.shape == (6, 2, 3)
    assert torch.equal(stats[..., 0], pooled[..., 0])
    expected = torch.tensor([[2.0, (8 / 3) ** 0.5]] * 3)  # mean, standard deviation over clip 1
    assert torch.allclose(stats[:3, 0, 1:], expected)
    assert stats[3:, 1, 1:].tolist() == [[5.0, 0.0]] * 3
    assert stats[:3, 1, 1:].abs().sum() == 0 and stats[3:, 0, 1:].abs().sum() == 0
    with pytest.raises(ValueError, match="clips of 3 frames"):
        clip_statistics(pooled[:4], 3)


def test_temporal_pooling_keeps_clips_in_a_batch_apart(processor, clip):
    model = tiny_model(processor).eval()
    assert model.config.temporal_pooling
    pixels = processor.prepare_video(clip[0])["pixel_values"]
    with torch.no_grad():
        alone = model.get_image_features(pixels).pooler_output
        together = model.get_image_features(torch.cat([pixels, pixels.flip(-1)])).pooler_output
        reordered = model.get_image_features(pixels.flip(0)).pooler_output
    assert torch.allclose(together[: len(pixels)], alone, atol=1e-5)
    # The pooled tokens read the whole clip: reversing the frames only reverses their per-frame part.
    assert torch.allclose(reordered.flip(0), alone, atol=1e-5)
    assert not torch.allclose(together[len(pixels) :], alone, atol=1e-3)


def test_frames_count_must_match_placeholders(processor, clip):
    model = tiny_model(processor)
    inputs = processor.prepare_video(clip[0])
    with pytest.raises(ValueError, match="<image> tokens"):  # two clips' frames for one clip's placeholders
        model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"].repeat(2, 1, 1, 1))
    with pytest.raises(ValueError, match="whole clips"):  # part of a clip, with temporal pooling
        model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"][:1])


def test_training_steps_lower_the_loss_on_a_repeated_batch(processor, clip):
    model = tiny_model(processor)
    frames = list(load_video_frames(clip[0], NUM_FRAMES))
    text = processor.apply_chat_template(build_messages(NUM_FRAMES, response=clip[1]["cot"]))
    batch = processor(text=[text], images=[frames], return_tensors="pt")
    prompt = processor.apply_chat_template(build_messages(NUM_FRAMES), add_generation_prompt=True)
    prompt_length = len(processor(text=[prompt], images=[frames])["input_ids"][0])
    labels = batch["input_ids"].clone()
    labels[:, :prompt_length] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)  # moves only with gradients
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = []
    for _ in range(8):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0] and losses == sorted(losses, reverse=True)
    unchanged = [name for name, p in model.named_parameters() if torch.equal(before[name], p)]
    assert unchanged == ["model.vision_tower.layernorm.weight", "model.vision_tower.layernorm.bias"]  # unused pooler


def test_it_tells_clips_apart_by_their_frames_alone(processor):
    """Three clips, one identical prompt: fitting their three answers is possible only by looking at the frames."""
    rows = [generate_clip(f"l1-fit{seed}", level=1, seed=seed) for seed in (21, 22, 23)]
    answers = [row["answer"] for row in rows]
    assert len(set(answers)) == 3
    frames = [list(load_video_frames(row["video"]["bytes"], NUM_FRAMES)) for row in rows]
    prompt = processor.apply_chat_template(build_messages(NUM_FRAMES, mode="qa"), add_generation_prompt=True)
    texts = [processor.apply_chat_template(build_messages(NUM_FRAMES, "qa", answer)) for answer in answers]
    batch = processor(text=texts, images=frames, padding=True, return_tensors="pt")
    prompt_length = len(processor(text=[prompt], images=[frames[0]])["input_ids"][0])
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    labels[:, :prompt_length] = -100
    model = tiny_model(processor)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(200):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    # Blind to the frames, the three identical prompts would get one and the same greedy answer.
    answered = []
    for clip_frames in frames:
        inputs = processor(text=[prompt], images=[clip_frames], return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=60, do_sample=False)
        answered.append(processor.post_process_generation(output, inputs["input_ids"].shape[1])[0].strip())
    assert answered == answers
