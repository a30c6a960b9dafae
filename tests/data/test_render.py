"""The procedural picture: frames and layout of `render_clip`, attributes that show, mouths that follow the
openness they are given, and the silent mp4 of `encode_video`."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from deepdubber_hf.data import render
from deepdubber_hf.data.render import encode_video, render_clip
from deepdubber_hf.data.schema import ANIMALS, EMOTIONS, FPS, Character, ScenePlan


def make_plan(*characters, duration_s=0.4, width=160, height=128):
    return ScenePlan("test", level=1, scene_type="dialogue", characters=list(characters), duration_s=duration_s,
                     width=width, height=height)


def person(gender="female", age="adult", emotion="neutral", **kwargs):
    return Character("person", gender, age, emotion, **kwargs)


def still(plan, mouth, seed=0):
    """A render with the camera and the sensor noise off, so that pixels can be compared exactly."""
    return render_clip(plan, mouth, np.random.default_rng(seed), camera_motion=False, sensor_noise=False)


def region(frame, box, pad=0):
    x0, y0, x1, y1 = box
    return frame[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad].astype(np.float32)


def test_frames_and_layout_shapes():
    plan = make_plan(person(talking=True), Character("dog", "male", "young", "happy"),
                     person(visible=False), width=192, height=160, duration_s=1.0)
    mouth = np.zeros((3, plan.num_frames), np.float32)
    mouth[0] = np.abs(np.sin(np.arange(plan.num_frames) / 2))
    frames, layout = render_clip(plan, mouth, np.random.default_rng(0))
    assert frames.shape == (25, 160, 192, 3) and frames.dtype == np.uint8
    assert layout[2] is None
    for entry in layout[:2]:
        x0, y0, x1, y1 = entry["bbox"]
        assert 0 <= x0 < x1 <= 192 and 0 <= y0 < y1 <= 160
        mx0, my0, mx1, my1 = entry["mouth_bbox"]
        assert x0 <= mx0 < mx1 <= x1 and y0 <= my0 < my1 <= y1
    # Side by side without heavy overlap.
    (a0, _, a1, _), (b0, _, b1, _) = sorted(e["bbox"] for e in layout[:2])
    assert max(0, a1 - b0) < 0.25 * min(a1 - a0, b1 - b0)


def test_deterministic_per_seed():
    plan = make_plan(person(talking=True), Character("cat", "female", "child", "sad"))
    mouth = np.random.default_rng(1).uniform(0, 1, (2, plan.num_frames))
    first, layout = render_clip(plan, mouth, np.random.default_rng(5))
    again, layout_again = render_clip(plan, mouth, np.random.default_rng(5))
    other, _ = render_clip(plan, mouth, np.random.default_rng(6))
    assert np.array_equal(first, again) and layout == layout_again
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 5


def test_mouth_opens_with_openness_inside_its_box():
    for species in ("person",) + ANIMALS:
        for seed in range(3):
            plan = make_plan(Character(species, ("male", "female")[seed % 2], "adult", "neutral"), duration_s=0.2)
            renders = [still(plan, np.full((1, plan.num_frames), o), seed) for o in (0.0, 0.5, 1.0)]
            closed, layout = renders[0]
            x0, y0, x1, y1 = layout[0]["mouth_bbox"]
            change, darkest = [], []
            for frames, other_layout in renders:
                assert other_layout == layout
                # Frame 0 has no nod yet: only the mouth differs, and only inside its box.
                difference = np.abs(frames[0].astype(int) - closed[0].astype(int)).sum(-1)
                assert difference.sum() == difference[y0:y1, x0:x1].sum(), (species, seed)
                change.append(difference[y0:y1, x0:x1].mean())
                darkest.append(np.sort(region(frames[0], (x0, y0, x1, y1)).mean(-1).ravel())[:6].mean())
            assert change[0] == 0 < change[1] < change[2], (species, seed, change)
            if darkest[0] > 40:  # an open mouth shows its dark inside (on black fur it shows red instead)
                assert darkest[2] < darkest[0] - 15, (species, seed, darkest)


def test_listener_mouth_stays_still_while_speaker_talks():
    plan = make_plan(person("male", talking=True), person("female"), duration_s=2.0)
    mouth = np.zeros((2, plan.num_frames), np.float32)
    mouth[0] = np.abs(np.sin(np.arange(plan.num_frames) / 2.5))
    frames, layout = still(plan, mouth)
    listener = np.stack([region(f, layout[1]["mouth_bbox"]) for f in frames])
    speaker = np.stack([region(f, layout[0]["mouth_bbox"]) for f in frames])
    assert np.array_equal(listener.min(0), listener.max(0))
    assert (speaker.max(0) - speaker.min(0)).mean() > 10
    # The speaker's mouth region follows its openness.
    change = np.abs(speaker - speaker[0]).mean(axis=(1, 2, 3))
    assert np.corrcoef(change, mouth[0])[0, 1] > 0.7


def test_camera_and_noise_switches_change_nothing_else():
    plan = make_plan(person(talking=True), duration_s=1.0)
    mouth = np.zeros((1, plan.num_frames))
    moving, _ = render_clip(plan, mouth, np.random.default_rng(3))
    fixed, layout_fixed = still(plan, mouth, seed=3)
    noisy, _ = render_clip(plan, mouth, np.random.default_rng(3), camera_motion=False)
    assert np.abs(noisy.astype(int) - fixed.astype(int)).mean() < 6  # only the noise differs
    assert not np.array_equal(moving, fixed)
    box = layout_fixed[0]["mouth_bbox"]
    assert np.array_equal(fixed[0, box[1] : box[3], box[0] : box[2]], fixed[-1, box[1] : box[3], box[0] : box[2]])


@pytest.mark.parametrize("species", ("person",) + ANIMALS)
def test_emotions_change_only_the_character(species):
    renders = {e: still(make_plan(Character(species, "female", "adult", e)), np.zeros((1, 10))) for e in EMOTIONS}
    happy, happy_layout = renders["happy"]
    sad, sad_layout = renders["sad"]
    boxes = [happy_layout[0]["bbox"], sad_layout[0]["bbox"]]
    outside = np.ones(happy.shape[1:3], bool)
    for x0, y0, x1, y1 in boxes:
        outside[y0:y1, x0:x1] = False
    assert np.array_equal(happy[:, outside], sad[:, outside])  # the same scene and place
    x0, y0, x1, y1 = happy_layout[0]["bbox"]
    face = slice(y0, y0 + (y1 - y0) // 2), slice(x0, x1)
    for emotion in EMOTIONS:
        if emotion != "neutral":
            difference = np.abs(renders[emotion][0][0][face].astype(int) - renders["neutral"][0][0][face].astype(int))
            assert difference.mean() > 1.0, emotion
    mx0, my0, mx1, my1 = happy_layout[0]["mouth_bbox"]
    mouth = np.s_[my0:my1, mx0:mx1]
    assert np.abs(happy[0][mouth].astype(int) - sad[0][mouth].astype(int)).mean() > 5
    if species == "person":
        # Happy corners of the mouth go up, sad ones down: the middle of the mouth line sits lower when smiling.
        def middle_minus_corners(frames, layout):
            x0, y0, x1, y1 = layout[0]["mouth_bbox"]
            grey = frames[0, y0 - 2 : y1 + 2, x0:x1].astype(np.float32).mean(-1)
            rows = np.arange(grey.shape[0])[:, None]
            # Only the mouth line is much darker than the skin around it (nose and jaw are a little darker).
            weight = np.clip(np.median(grey) - grey - 20, 0, None) + 1e-6
            centre = (weight * rows).sum(0) / weight.sum(0)  # the darkness-weighted row of each column
            used = weight.sum(0) > 1  # columns the mouth line crosses
            centre, columns = centre[used], np.flatnonzero(used)
            middle = np.abs(columns - columns.mean()) < (columns.max() - columns.min()) / 4
            return centre[middle].mean() - centre[~middle].mean()

        assert middle_minus_corners(happy, happy_layout) > middle_minus_corners(sad, sad_layout) + 0.5


def grey_fraction(frames, layout):
    """Fraction of grey-white pixels at the top of the head (hair, or fur frosting on animals)."""
    x0, y0, x1, y1 = layout[0]["bbox"]
    cx, w = (x0 + x1) // 2, (x1 - x0) // 5
    top = frames[0, y0 : y0 + max(3, (y1 - y0) // 8), cx - w : cx + w].astype(int)
    grey = (top.max(-1) - top.min(-1) < 28) & (top.mean(-1) > 140)
    return grey.mean()


def test_elderly_hair_is_grey_and_children_are_small():
    elderly, young, child_top, adult_top = [], [], [], []
    for seed in range(8):
        gender = ("female", "male")[seed % 2]
        for age, out in (("elderly", elderly), ("young", young)):
            frames, layout = still(make_plan(person(gender, age)), np.zeros((1, 10)), seed)
            out.append(grey_fraction(frames, layout))
        child_top.append(still(make_plan(person(gender, "child")), np.zeros((1, 10)), seed)[1][0]["bbox"][1])
        adult_top.append(still(make_plan(person(gender, "adult")), np.zeros((1, 10)), seed)[1][0]["bbox"][1])
    assert np.mean(elderly) > np.mean(young) + 0.2
    assert min(child_top) > max(adult_top)  # a child's head is lower in the picture


def test_attributes_each_change_the_picture():
    base = {"species": "person", "gender": "female", "age": "young", "emotion": "neutral"}
    reference, layout = still(make_plan(Character(**base)), np.zeros((1, 10)))
    x0, y0, x1, y1 = layout[0]["bbox"]
    head = np.s_[:, y0 : (y0 + y1) // 2, x0:x1]
    for key, value in (("gender", "male"), ("age", "elderly"), ("emotion", "angry"), ("species", "bear")):
        frames, _ = still(make_plan(Character(**{**base, key: value})), np.zeros((1, 10)))
        assert np.abs(frames[head].astype(int) - reference[head].astype(int)).mean() > 1.5, key


def test_invisible_narrator_draws_nobody():
    mouth = np.zeros((1, 10))
    frames, layout = render_clip(make_plan(person(visible=False, talking=True)), mouth, np.random.default_rng(2))
    empty, empty_layout = render_clip(make_plan(), np.zeros((0, 10)), np.random.default_rng(2))
    assert layout == [None] and empty_layout == []
    assert np.array_equal(frames, empty)


def test_bad_inputs_raise():
    plan = make_plan(person())
    with pytest.raises(ValueError, match="mouth_openness has shape"):
        render_clip(plan, np.zeros((2, plan.num_frames)), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        render_clip(plan, np.full((1, plan.num_frames), 1.5), np.random.default_rng(0))
    with pytest.raises(ValueError, match="species"):
        render_clip(make_plan(Character("horse", "male", "adult", "happy")), np.zeros((1, 10)),
                    np.random.default_rng(0))
    with pytest.raises(ValueError, match="even"):
        encode_video(np.zeros((2, 33, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        encode_video(np.zeros((2, 32, 32, 3), np.float32))


def test_missing_ffmpeg_names_the_package(monkeypatch):
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="ffmpeg"):
        encode_video(np.zeros((2, 32, 32, 3), np.uint8))


def test_encode_video_decodes_silent_and_deterministic(tmp_path):
    from torchcodec.decoders import VideoDecoder

    plan = make_plan(person(talking=True), duration_s=1.2, width=176, height=144)
    mouth = np.abs(np.sin(np.arange(plan.num_frames) / 2))[None]
    frames, _ = render_clip(plan, mouth, np.random.default_rng(0))
    video = encode_video(frames, fps=FPS, crf=18)
    assert video == encode_video(frames, fps=FPS, crf=18)
    decoder = VideoDecoder(video)
    assert decoder.metadata.num_frames == 30 and abs(decoder.metadata.average_fps - 25) < 1e-6
    assert (decoder.metadata.width, decoder.metadata.height) == (176, 144)
    decoded = decoder.get_frames_in_range(0, 30).data.permute(0, 2, 3, 1).numpy()
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 6  # colours survive yuv420p
    path = tmp_path / "clip.mp4"
    path.write_bytes(video)
    probe = subprocess.run([shutil.which("ffprobe"), "-v", "error", "-show_streams", "-of", "json", str(path)],
                           capture_output=True, check=True)
    streams = json.loads(probe.stdout)["streams"]
    assert [s["codec_type"] for s in streams] == ["video"]
    assert streams[0]["codec_name"] == "h264" and streams[0]["pix_fmt"] == "yuv420p"
    assert video.find(b"moov") < video.find(b"mdat")  # +faststart: the index comes first
