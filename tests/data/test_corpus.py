"""The procedural corpus end to end: real speech, real frames, real mp4/wav bytes in parquet, loaded back with
`datasets.load_dataset` offline; determinism, resuming, mouths that follow their speaker's speech."""

import os
import shutil

import numpy as np
import pytest

from deepdubber_hf.data.corpus import generate_clip, generate_corpus, shard_plan
from deepdubber_hf.reasoner.cot import TAGS

# The mouth-openness label of the speaker must correlate with the decoded speech energy at least this well,
MIN_LABEL_ENERGY_CORRELATION = 0.75
# and the pixels of its mouth region in the decoded video at least this well.
MIN_MOUTH_ENERGY_CORRELATION = 0.5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus") / "cot-dubbing"
    generate_corpus(str(folder), level=1, num_clips=6, seed=7, workers=2, shard_size=3, progress=False)
    generate_corpus(str(folder), level=2, num_clips=3, seed=7, workers=1, shard_size=3, progress=False)
    return folder


def test_load_dataset_decodes_frames_and_audio(corpus):
    import datasets

    train = datasets.load_dataset(str(corpus), "level1", split="train")
    test = datasets.load_dataset(str(corpus), "level1", split="test")
    assert (len(train), len(test)) == (5, 1)
    animals = datasets.load_dataset(str(corpus), "level2", split="train")
    assert {c["species"] for row in animals for c in row["characters"]} <= {"cat", "dog", "rabbit", "bear"}
    row = train[0]
    frames = row["video"].get_frames_in_range(0, row["video"].metadata.num_frames).data
    assert frames.shape[1:] == (3, row["height"], row["width"])
    assert abs(frames.shape[0] - round(row["duration_s"] * 25)) <= 1
    assert 1.0 <= row["duration_s"] <= 6.0
    audio = row["audio"].get_all_samples()
    assert audio.sample_rate == 24000 and abs(audio.data.shape[-1] / 24000 - row["duration_s"]) < 0.05
    assert row["reference_audio"].get_all_samples().data.abs().max() > 0.01
    assert train.features["scene_type"].names == ["dialogue", "monologue", "narration"]
    cot = row["cot"]
    assert all(cot.index(f"<{t}>") < cot.index(f"</{t}>") for t in TAGS)
    assert "Step 4" in cot and row["answer"] in cot
    card = (corpus / "README.md").read_text()
    assert "config_name: level1" in card and "config_name: level2" in card and "mouth_openness" in card


def test_labels_are_consistent(corpus):
    import datasets

    rows = list(datasets.load_dataset(str(corpus), "level1", split="train"))
    for row in rows:
        scene = ["dialogue", "monologue", "narration"][row["scene_type"]]
        talking = [c for c in row["characters"] if c["talking"]]
        speakers = {t["speaker"] for t in row["turns"]}
        assert len(row["mouth_openness"]) == len(row["characters"])
        if scene == "dialogue":
            assert len(talking) == 2 and len(speakers) == 2
        elif scene == "monologue":
            assert len(talking) == 1 and speakers == {row["characters"].index(talking[0])}
        else:
            assert not talking and all(max(track) == 0 for track in row["mouth_openness"])
        target = row["characters"][row["target_speaker"]]
        assert (target["gender"], target["age"], target["emotion"]) == (
            row["speaker_gender"], row["speaker_age"], row["speaker_emotion"])
        assert row["transcript"] == " ".join(t["text"] for t in row["turns"])
        for a, b in zip(row["turns"], row["turns"][1:]):
            assert a["end_s"] <= b["start_s"]  # turns do not overlap


def test_same_seed_same_bytes_and_resume(corpus, tmp_path):
    shard = corpus / "data" / "level1" / "train-00001-of-00002.parquet"
    copy = tmp_path / "again"
    shutil.copytree(corpus, copy)
    (copy / "data" / "level1" / shard.name).unlink()  # as if the run had been killed before this shard
    (copy / "data" / "level1" / (shard.name + ".tmp-1234")).write_bytes(b"half a shard")  # and left this behind
    generate_corpus(str(copy), level=1, num_clips=6, seed=7, workers=1, shard_size=3, progress=False)
    assert (copy / "data" / "level1" / shard.name).read_bytes() == shard.read_bytes()
    with pytest.raises(ValueError, match="same settings to resume"):
        generate_corpus(str(copy), level=1, num_clips=6, seed=8, workers=1, shard_size=3, progress=False)


def test_shard_plan_covers_every_clip_once():
    shards = shard_plan(23, 0.2, shard_size=5)
    indices = [i for _, _, _, chunk in shards for i in chunk]
    assert sorted(indices) == list(range(23))
    assert [s[0] for s in shards].count("test") == 1 and len(shards[-1][3]) == 5


def _mouth_change(video, box, pad=3):
    """How much the (padded) mouth region differs from its first frame, per frame, in the decoded mp4 (every clip
    opens with a short silence, so the first frame shows the mouth at rest)."""
    frames = video.get_frames_in_range(0, video.metadata.num_frames).data.float()  # (T, 3, H, W)
    x0, y0, x1, y1 = box
    region = frames[:, :, max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
    return (region - region[:1]).abs().mean(dim=(1, 2, 3)).numpy()


def _audio_energy(row, num_frames):
    samples = row["audio"].get_all_samples().data.mean(0).numpy()
    hop = 24000 // 25
    return np.array([np.sqrt(np.mean(samples[i * hop : (i + 1) * hop] ** 2) + 1e-12) for i in range(num_frames)])


def _as_row(clip):
    """A generated row, decoded the way `datasets` decodes it."""
    from torchcodec.decoders import AudioDecoder, VideoDecoder

    return {**clip, "video": VideoDecoder(clip["video"]["bytes"]), "audio": AudioDecoder(clip["audio"]["bytes"])}


@pytest.mark.parametrize("level", [1, 2])
def test_mouth_track_follows_the_speech_track(level):
    """The drawn mouth opening (label) lines up with the energy of the decoded speech track, frame by frame."""
    for seed in range(4):
        row = _as_row(generate_clip(f"m{seed}", level, 100 + seed, scene_type="monologue"))
        track = np.array(row["mouth_openness"][row["target_speaker"]])
        energy = _audio_energy(row, len(track))
        assert np.corrcoef(track, energy)[0, 1] > MIN_LABEL_ENERGY_CORRELATION


@pytest.mark.parametrize("level", [1, 2])
def test_mouth_pixels_follow_their_speakers_speech_energy(level):
    """Pixels of the speaker's mouth in the decoded mp4 move with the energy of the decoded speech track (camera
    held still so that the mouth box stays put; the clip is otherwise the corpus's own)."""
    correlations = []
    for seed in range(4):
        row = _as_row(generate_clip(f"m{seed}", level, 100 + seed, scene_type="monologue", camera_motion=False))
        speaker = row["characters"][row["target_speaker"]]
        change = _mouth_change(row["video"], speaker["mouth_bbox"])
        energy = _audio_energy(row, len(change))
        correlations.append(np.corrcoef(change, energy)[0, 1])
    assert min(correlations) > MIN_MOUTH_ENERGY_CORRELATION, correlations
    assert np.mean(correlations) > MIN_MOUTH_ENERGY_CORRELATION + 0.1, correlations


def test_narration_mouths_do_not_move():
    """Voice-over clips: speech in the track, still mouths on screen (against a talking mouth's motion)."""
    talking = _as_row(generate_clip("m", 1, 100, scene_type="monologue", camera_motion=False))
    speaker = talking["characters"][talking["target_speaker"]]
    talking_motion = _mouth_change(talking["video"], speaker["mouth_bbox"]).mean()
    checked = 0
    for seed in range(6):
        row = _as_row(generate_clip(f"n{seed}", 1, 300 + seed, scene_type="narration", camera_motion=False))
        assert all(max(track) == 0 for track in row["mouth_openness"])
        assert row["audio"].get_all_samples().data.abs().max() > 0.05
        for character in (c for c in row["characters"] if c["visible"]):
            motion = _mouth_change(row["video"], character["mouth_bbox"]).mean()
            assert motion < 0.25 * talking_motion, (motion, talking_motion)  # camera shake and blinks only
            checked += 1
    assert checked > 0


def test_generate_data_command(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "deepdubber_hf.cli", "generate-data", str(tmp_path / "c"),
                             "--level", "1", "--num-clips", "2", "--seed", "1"], capture_output=True, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c" / "data" / "level1" / "test-00000-of-00001.parquet").is_file()
    bad = subprocess.run([sys.executable, "-m", "deepdubber_hf.cli", "generate-data", str(tmp_path / "d"),
                          "--level", "1", "--num-clips", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--num-clips must be at least 2" in bad.stderr
