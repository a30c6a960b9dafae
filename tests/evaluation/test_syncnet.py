"""SyncNet: the converter of syncnet_python's weights, the MFCCs, the offset arithmetic and LSE on generated clips."""

import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from deepdubber_hf.evaluation.syncnet import (
    SYNCNET_TINY_CONFIG,
    SyncNetModel,
    compute_mfcc,
    convert_syncnet_state_dict,
    crop_faces,
    face_boxes_from_mouth,
    load_frames,
    load_syncnet,
    lse_for_batch,
    lse_for_files,
    lse_scores,
    scores_from_distances,
    speaker_mouth_bbox,
    sync_distances,
    syncnet_config_from_state_dict,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from convert_syncnet_checkpoint import load_official_checkpoint


class OfficialS(nn.Module):
    """syncnet_python's `SyncNetModel.S`, layer for layer as published (written out independently of ours)."""

    def __init__(self):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, (3, 3), (1, 1), (1, 1)), nn.BatchNorm2d(64), nn.ReLU(True), nn.MaxPool2d((1, 1), (1, 1)),
            nn.Conv2d(64, 192, (3, 3), (1, 1), (1, 1)), nn.BatchNorm2d(192), nn.ReLU(True), nn.MaxPool2d((3, 3), (1, 2)),
            nn.Conv2d(192, 384, (3, 3), padding=(1, 1)), nn.BatchNorm2d(384), nn.ReLU(True),
            nn.Conv2d(384, 256, (3, 3), padding=(1, 1)), nn.BatchNorm2d(256), nn.ReLU(True),
            nn.Conv2d(256, 256, (3, 3), padding=(1, 1)), nn.BatchNorm2d(256), nn.ReLU(True),
            nn.MaxPool2d((3, 3), (2, 2)),
            nn.Conv2d(256, 512, (5, 4), padding=(0, 0)), nn.BatchNorm2d(512), nn.ReLU(),
        )  # fmt: skip
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(96), nn.ReLU(True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(True),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(True),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(256, 512, (1, 6, 6), padding=0), nn.BatchNorm3d(512), nn.ReLU(True),
        )  # fmt: skip

    def forward_aud(self, x):
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x):
        return self.netfclip(self.netcnnlip(x).flatten(1))


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    model = OfficialS()
    for module in model.modules():  # non-trivial running statistics, so that eval-mode batch norm matters
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return SyncNetModel(**SYNCNET_TINY_CONFIG).eval()


@pytest.fixture(scope="module")
def monologue(tmp_path_factory):
    """A level-1 monologue whose face the cascade finds: (silent mp4, wav, dubbed mp4 with the wav as soundtrack)."""
    from deepdubber_hf.data.corpus import generate_clip

    row = generate_clip("l1-sync", level=1, seed=6, scene_type="monologue")
    folder = tmp_path_factory.mktemp("syncnet_clip")
    (folder / "clip.mp4").write_bytes(row["video"]["bytes"])
    (folder / "clip.wav").write_bytes(row["audio"]["bytes"])
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", folder / "clip.mp4", "-i", folder / "clip.wav",
                    "-c:v", "copy", "-c:a", "aac", "-shortest", folder / "dubbed.mp4"], check=True)  # fmt: skip
    return str(folder / "clip.mp4"), str(folder / "clip.wav"), str(folder / "dubbed.mp4")


# ----------------------------------------------------------------------------------------------------------------
# The model and the converter
# ----------------------------------------------------------------------------------------------------------------


def test_official_weights_map_one_to_one_and_give_the_same_embeddings(official):
    state = official.state_dict()
    config = syncnet_config_from_state_dict(state)
    assert config == {"audio_channels": (64, 192, 384, 256, 256, 512), "lip_channels": (96, 256, 256, 256, 256, 512),
                      "fc_hidden_size": 512, "embedding_dim": 1024, "crop_size": 224, "crop_region": "face"}  # fmt: skip
    model = SyncNetModel(**config).eval()
    converted = convert_syncnet_state_dict(state)
    assert list(converted) == list(model.state_dict()) == list(state)  # same keys, same order
    model.load_state_dict(converted, strict=True)

    torch.manual_seed(1)
    mfcc, pixels = torch.randn(2, 1, 13, 20), torch.rand(2, 3, 5, 224, 224) * 255
    with torch.no_grad():
        assert torch.equal(model.get_audio_embeddings(mfcc), official.forward_aud(mfcc))
        assert torch.equal(model.get_video_embeddings(pixels), official.forward_lip(pixels))

    # Wrapped keys and the batch-norm counters that old checkpoints lack are handled; foreign keys are named.
    legacy = {f"__S__.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert all(torch.equal(convert_syncnet_state_dict(legacy)[k], v) for k, v in converted.items()
               if not k.endswith("num_batches_tracked"))  # fmt: skip
    with pytest.raises(ValueError, match="keys that SyncNet v2 has not"):
        convert_syncnet_state_dict({**state, "netextra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="not a syncnet_python SyncNet state dict"):
        convert_syncnet_state_dict({"conv.weight": torch.zeros(1)})


def test_the_conversion_script_reads_state_dicts_safely_and_whole_modules_only_when_allowed(official, tmp_path):
    torch.save(official.state_dict(), tmp_path / "state.model")
    assert load_official_checkpoint(str(tmp_path / "state.model")).keys() == official.state_dict().keys()

    # A whole pickled module, as syncnet_python's `save` writes it (class `S` of a module named `SyncNetModel`).
    module = types.ModuleType("SyncNetModel")
    module.S = type("S", (OfficialS,), {"__module__": "SyncNetModel"})
    sys.modules["SyncNetModel"] = module
    whole = module.S()
    whole.load_state_dict(official.state_dict())
    torch.save(whole, tmp_path / "whole.model")
    del sys.modules["SyncNetModel"]  # syncnet_python is not installed where the script runs
    with pytest.raises(ValueError, match="--allow_pickle"):
        load_official_checkpoint(str(tmp_path / "whole.model"))
    loaded = load_official_checkpoint(str(tmp_path / "whole.model"), allow_pickle=True)
    assert all(torch.equal(a, b) for a, b in zip(convert_syncnet_state_dict(loaded).values(),
                                                   official.state_dict().values()))  # fmt: skip
    sys.modules.pop("SyncNetModel", None)

    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "convert_syncnet_checkpoint.py"),
                             "--checkpoint", tmp_path / "state.model", "--output_dir", tmp_path / "out"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    converted = SyncNetModel.from_pretrained(tmp_path / "out")
    assert converted.config.crop_size == 224 and converted.config.crop_region == "face"
    assert torch.equal(converted.state_dict()["netfclip.3.weight"], official.state_dict()["netfclip.3.weight"])


def test_save_and_load_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    loaded = load_syncnet(str(tmp_path)).eval()
    assert loaded.config.crop_size == 64 and loaded.config.crop_region == "mouth"
    torch.manual_seed(2)
    mfcc, pixels = torch.randn(3, 1, 13, 20), torch.rand(3, 3, 5, 64, 64) * 255
    with torch.no_grad():
        assert torch.equal(loaded(mfcc, pixels)[0], tiny_model(mfcc, pixels)[0])
        assert torch.equal(loaded(mfcc, pixels)[1], tiny_model(mfcc, pixels)[1])


# ----------------------------------------------------------------------------------------------------------------
# Features and the scores' arithmetic
# ----------------------------------------------------------------------------------------------------------------


def test_mfcc_follows_python_speech_features():
    rng = np.random.default_rng(0)
    waveform = (0.1 * rng.standard_normal(640 * 10)).astype(np.float32)  # 10 video frames of 16 kHz audio
    mfcc = compute_mfcc(waveform)
    assert mfcc.shape == (13, 39)  # 1 + ceil((6400 - 400) / 160) frames of 25 ms every 10 ms
    # The first coefficient is the log power of each pre-emphasised 16-bit frame.
    signal = np.round(waveform.astype(np.float64) * 32768)
    signal = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])
    frame = signal[160 : 160 + 400]
    assert mfcc[0, 1] == pytest.approx(np.log((np.abs(np.fft.rfft(frame, 512)) ** 2 / 512).sum()), rel=1e-5)
    # Other rates are resampled to 16 kHz first.
    assert compute_mfcc(np.repeat(waveform, 3), sampling_rate=48_000).shape == (13, 39)


def test_mfcc_matches_the_reference_package_when_installed():
    psf = pytest.importorskip("python_speech_features")
    waveform = (0.1 * np.random.default_rng(1).standard_normal(16_000)).astype(np.float32)
    expected = psf.mfcc(np.round(waveform * 32768).astype(np.int16), 16_000).T
    np.testing.assert_allclose(compute_mfcc(waveform), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("delay", [-4, 0, 3])
def test_the_offset_is_syncnet_pythons_vshift_minus_argmin(delay):
    torch.manual_seed(0)
    vshift, num_windows = 6, 40
    video = torch.randn(num_windows, 8)
    # Audio delayed by `delay` windows: the audio of window i is found at i + delay.
    audio = torch.zeros(num_windows, 8)
    for i in range(num_windows):
        if 0 <= i - delay < num_windows:
            audio[i] = video[i - delay]
    distances = sync_distances(video, audio, vshift)
    assert distances.shape == (num_windows, 2 * vshift + 1)
    scores = scores_from_distances(distances, vshift)
    assert scores["offset"] == -delay
    mean = distances.mean(dim=0)
    assert scores["lse_d"] == pytest.approx(float(mean.min()))
    assert scores["lse_c"] == pytest.approx(float(mean.median() - mean.min())) and scores["lse_c"] > 0


def test_a_constructed_distance_matrix():
    distances = torch.tensor([[3.0, 1.0, 2.0, 4.0, 5.0], [3.0, 2.0, 2.0, 4.0, 5.0]])  # vshift 2, means 3 1.5 2 4 5
    assert scores_from_distances(distances, 2) == {"lse_d": 1.5, "lse_c": 1.5, "offset": 1}
    with pytest.raises(ValueError, match=r"shape \(windows >= 1, 7\)"):
        scores_from_distances(distances, 3)


# ----------------------------------------------------------------------------------------------------------------
# LSE on generated clips
# ----------------------------------------------------------------------------------------------------------------


def test_lse_on_a_generated_clip_and_its_own_speech(tiny_model, monologue, clip):
    video, wav, dubbed = monologue
    scores = lse_scores(video, wav, tiny_model, vshift=15, face_detection_stride=5, return_distances=True)
    assert scores["face_found"] and scores["num_windows"] > 30
    assert math.isfinite(scores["lse_d"]) and math.isfinite(scores["lse_c"]) and scores["lse_c"] >= 0
    assert -15 <= scores["offset"] <= 15
    assert scores["distances"].shape == (scores["num_windows"], 31)

    # The dubbed mp4's own soundtrack, and a (waveform, rate) pair, score like the wav.
    from_soundtrack = lse_for_files(dubbed, None, model=tiny_model, face_detection_stride=5)
    assert from_soundtrack["num_windows"] == scores["num_windows"]
    assert from_soundtrack["lse_d"] == pytest.approx(scores["lse_d"], rel=0.1)

    # A clip without a visible face (a narration) falls back to the whole frame, and says so.
    batch = lse_for_batch([(clip[0], clip[1]["audio"]), (video, wav)], tiny_model, vshift=5, face_detection_stride=5)
    assert batch["num_clips"] == 2 and not batch["per_clip"][0]["face_found"]
    assert batch["lse_d"] == pytest.approx(np.mean([r["lse_d"] for r in batch["per_clip"]]))


def test_the_corpus_mouth_box_puts_the_moving_mouth_in_the_crop(tiny_model):
    from deepdubber_hf.data.corpus import generate_clip

    row = generate_clip("l1-mouth", level=1, seed=6, scene_type="monologue")
    mouth = speaker_mouth_bbox(row)
    assert mouth is not None
    for hidden in ({"visible": False}, {"talking": False}):  # off screen, or shown silent: no lips to read
        assert speaker_mouth_bbox({**row, "characters": [{**c, **hidden} for c in row["characters"]]}) is None
    frames = load_frames(row["video"]["bytes"])
    boxes = face_boxes_from_mouth(mouth, len(frames))
    assert boxes.shape == (len(frames), 3)
    crops = crop_faces(frames, boxes, 48, "mouth")  # (f, 48, 48, 3)
    # The mouth opens and closes with the speech: the crops change over the clip, most in their middle.
    change = np.abs(np.diff(crops, axis=0)).mean(axis=(0, 3))  # (48, 48)
    ring = np.ones_like(change, dtype=bool)
    ring[12:36, 12:36] = False
    assert change[12:36, 12:36].mean() > 2 * change[ring].mean()
    scores = lse_scores(row["video"]["bytes"], row["audio"], tiny_model, vshift=5, mouth_bbox=mouth)
    assert scores["face_found"] and math.isfinite(scores["lse_d"])
    with pytest.raises(ValueError, match="mouth_bbox must be"):
        face_boxes_from_mouth([10, 10, 5, 20], 3)


def test_the_evaluate_module(tiny_model, monologue, tmp_path):
    from deepdubber_hf.evaluation.metrics import load_metric

    tiny_model.save_pretrained(tmp_path / "syncnet")
    video, wav, dubbed = monologue
    lse = load_metric("lse", model_name_or_path=str(tmp_path / "syncnet"), face_detection_stride=5)
    own = lse.compute(predictions=[dubbed])
    paired = lse.compute(predictions=[video], audio=[wav])
    assert own["num_clips"] == paired["num_clips"] == 1 and paired["lse_c"] >= 0
    with pytest.raises(ValueError, match="model_name_or_path"):
        load_metric("lse").compute(predictions=[dubbed])


def test_bad_inputs_are_named(tiny_model, monologue, tmp_path):
    video, wav, _ = monologue
    with pytest.raises(ValueError, match="vshift"):
        lse_scores(video, wav, tiny_model, vshift=-1)
    frames = np.zeros((4, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="too short"):
        lse_scores(frames, (np.zeros(16_000), 16_000), tiny_model)
    with pytest.raises(TypeError, match="no sampling rate"):
        lse_scores(video, np.zeros(16_000), tiny_model)
    with pytest.raises(ValueError, match="no audio stream"):
        lse_scores(video, None, tiny_model)
    with pytest.raises(ValueError, match=r"face_boxes must have the shape \(10, 3\)"):
        lse_scores(np.zeros((10, 64, 64, 3), np.uint8), (np.zeros(16_000), 16_000), tiny_model, face_boxes=np.ones(10))
    with pytest.raises(ValueError, match=r"\(batch, 3, 5, 64, 64\)"):
        tiny_model.get_video_embeddings(torch.zeros(1, 3, 5, 224, 224))
    with pytest.raises(ValueError, match=r"\(batch, 1, 13, 20\)"):
        tiny_model.get_audio_embeddings(torch.zeros(1, 13, 20))
    with pytest.raises(ValueError, match="crop_size 32 is too small"):
        SyncNetModel(crop_size=32)
    with pytest.raises(FileNotFoundError, match="train_syncnet.py"):
        load_syncnet(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="pass model"):
        lse_for_files(video, wav)
    with pytest.raises(FileNotFoundError, match="not found"):
        lse_for_files(str(tmp_path / "missing.mp4"), wav, model=tiny_model)


def test_the_shipped_tiny_syncnet_finds_the_offset_of_a_new_clip(tmp_path):
    from deepdubber_hf.audio import load_audio
    from deepdubber_hf.data.corpus import generate_clip

    model = load_syncnet(os.path.join(REPO, "checkpoints", "syncnet-tiny"))
    row = generate_clip("l1-shipped", level=1, seed=8, scene_type="monologue")  # a seed no training clip has
    mouth = speaker_mouth_bbox(row)
    (tmp_path / "speech.wav").write_bytes(row["audio"]["bytes"])
    speech = load_audio(str(tmp_path / "speech.wav"), 16000)
    late = torch.cat([speech.new_zeros(8 * 640), speech])[: len(speech)]  # 8 frames (0.32 s) late
    synced = lse_scores(row["video"]["bytes"], (speech, 16000), model, mouth_bbox=mouth)
    delayed = lse_scores(row["video"]["bytes"], (late, 16000), model, mouth_bbox=mouth)
    assert abs(synced["offset"]) <= 1 and abs(delayed["offset"] + 8) <= 1
