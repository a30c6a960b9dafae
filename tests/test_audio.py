"""Audio I/O and the log-mel, against f5-tts and vocos, on real files written with espeak-ng, ffmpeg and sox."""

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch
from f5_tts.model.modules import get_vocos_mel_spectrogram
from vocos.feature_extractors import MelSpectrogramFeatures

from deepdubber_hf.audio import (
    HOP_LENGTH,
    NUM_MEL_BINS,
    SAMPLING_RATE,
    LogMelSpectrogram,
    load_audio,
    log_mel_spectrogram,
    rms_normalize,
    save_audio,
)

# 16-bit PCM step: what a wav/flac round trip may change a sample by.
PCM_STEP = 1 / 32767


def run(*command):
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed: run `make system-deps` (apt packages espeak-ng ffmpeg sox).")
    subprocess.run(command, check=True, capture_output=True)


@pytest.fixture(scope="module")
def speech_files(tmp_path_factory):
    """One espeak-ng utterance (22.05 kHz wav) converted to the formats and layouts load_audio must read."""
    folder = tmp_path_factory.mktemp("speech")
    files = {name: str(folder / name) for name in ("espeak.wav", "24k.wav", "16k.wav", "24k.flac", "24k.mp3")}
    files["stereo"] = str(folder / "stereo.wav")
    run("espeak-ng", "-v", "en-us", "-w", files["espeak.wav"], "Where did you put the map?")
    ffmpeg = ("ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", files["espeak.wav"])
    run(*ffmpeg, "-ar", "24000", files["24k.wav"])
    run(*ffmpeg, "-ar", "16000", files["16k.wav"])
    run(*ffmpeg, "-ar", "24000", "-codec:a", "libmp3lame", "-b:a", "64k", files["24k.mp3"])
    run("sox", files["24k.wav"], files["24k.flac"])
    # left = the speech, right = half of it: the mono mix is 0.75 of the speech
    run("sox", files["24k.wav"], files["stereo"], "remix", "1", "1v0.5")
    return files


def num_samples(path):
    return int(subprocess.run(["soxi", "-s", path], check=True, capture_output=True, text=True).stdout)


# ---------------------------------------------------------------------------------------------------- log-mel


def test_log_mel_matches_f5_tts_and_vocos_on_random_audio():
    torch.manual_seed(0)
    waveform = torch.rand(2, 24_000 + 77) * 2 - 1  # (b, nw), not a multiple of the hop
    mel = log_mel_spectrogram(waveform)
    assert mel.shape == (2, NUM_MEL_BINS, waveform.shape[-1] // HOP_LENGTH + 1)
    torch.testing.assert_close(mel, get_vocos_mel_spectrogram(waveform), rtol=0, atol=1e-5)
    torch.testing.assert_close(mel, MelSpectrogramFeatures()(waveform), rtol=0, atol=1e-5)
    # (b, 1, nw) like F5-TTS accepts, unbatched in → unbatched out, module form = functional form
    torch.testing.assert_close(log_mel_spectrogram(waveform[:, None]), mel, rtol=0, atol=0)
    torch.testing.assert_close(LogMelSpectrogram()(waveform[1]), mel[1], rtol=0, atol=0)


def test_log_mel_matches_f5_tts_and_vocos_on_speech(speech_files):
    speech = load_audio(speech_files["24k.wav"])  # has exact digital silence at the ends
    mel = log_mel_spectrogram(speech)
    assert mel.shape == (NUM_MEL_BINS, speech.shape[-1] // HOP_LENGTH + 1)
    torch.testing.assert_close(mel[None], get_vocos_mel_spectrogram(speech[None]), rtol=0, atol=1e-5)
    # Vocos clips the magnitude at 1e-7 where F5-TTS (and we) clip at 1e-5: equal above the F5-TTS floor.
    vocos_mel = MelSpectrogramFeatures()(speech[None])[0]
    assert (vocos_mel < math.log(1e-5)).any()  # the floors do differ on this input
    torch.testing.assert_close(mel, vocos_mel.clamp(min=math.log(1e-5)), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- loading


def test_load_wav_flac_mp3(speech_files):
    wav = load_audio(speech_files["24k.wav"])
    assert wav.dtype == torch.float32 and wav.ndim == 1
    assert wav.shape[0] == num_samples(speech_files["24k.wav"])
    assert 0.1 < wav.abs().max() <= 1
    assert torch.equal(load_audio(speech_files["24k.flac"]), wav)  # lossless, same 16-bit samples
    mp3 = load_audio(speech_files["24k.mp3"])
    assert abs(mp3.shape[0] - wav.shape[0]) / SAMPLING_RATE < 0.06  # encoder delay/padding only
    assert abs(mp3.square().mean().sqrt() - wav.square().mean().sqrt()) < 0.01
    # torchcodec trims the encoder delay: the decoded speech is aligned with the wav, not shifted
    n = min(mp3.shape[0], wav.shape[0])
    assert torch.dot(mp3[:n], wav[:n]) / torch.dot(wav[:n], wav[:n]) > 0.9


def test_load_resamples_and_keeps_duration(speech_files):
    native = load_audio(speech_files["16k.wav"], sampling_rate=16_000)
    assert native.shape[0] == num_samples(speech_files["16k.wav"])
    upsampled = load_audio(speech_files["16k.wav"])
    assert upsampled.shape[0] == math.ceil(native.shape[0] * 24_000 / 16_000)
    assert abs(upsampled.shape[0] / 24_000 - native.shape[0] / 16_000) < 1 / 16_000
    # the same speech either way: compare with the file ffmpeg resampled to 24 kHz itself, by loudness
    reference = load_audio(speech_files["24k.wav"])
    assert abs(upsampled.shape[0] - reference.shape[0]) <= 2
    assert abs(upsampled.square().mean().sqrt() - reference.square().mean().sqrt()) < 0.01


def test_stereo_is_mixed_to_mono(speech_files):
    mono = load_audio(speech_files["24k.wav"])
    mixed = load_audio(speech_files["stereo"])
    assert mixed.ndim == 1 and mixed.shape == mono.shape
    torch.testing.assert_close(mixed, 0.75 * mono, rtol=0, atol=2 * PCM_STEP)


def test_dict_tuple_and_tensor_inputs(speech_files):
    from_file = load_audio(speech_files["16k.wav"])
    native = load_audio(speech_files["16k.wav"], sampling_rate=16_000)
    as_dict = load_audio({"array": native.numpy().astype(np.float64), "sampling_rate": 16_000})
    as_tuple = load_audio((native, 16_000))
    torch.testing.assert_close(as_dict, from_file)
    torch.testing.assert_close(as_tuple, from_file)
    assert as_dict.dtype == torch.float32
    # (channels, samples) arrays are mixed down; a bare array is taken to be at the target rate already
    stereo = torch.stack([native, torch.zeros_like(native)])
    torch.testing.assert_close(load_audio((stereo, 16_000), sampling_rate=16_000), native / 2)
    torch.testing.assert_close(load_audio(native.numpy()), native)
    with pytest.raises(ValueError, match="sampling_rate"):
        load_audio({"array": native.numpy()})


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(missing)
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(str(missing))


# ---------------------------------------------------------------------------------------------------- rms, saving


def test_rms_normalize():
    t = torch.arange(24_000) / 24_000
    sine = torch.sin(2 * math.pi * 220 * t) * math.sqrt(2)  # rms 1
    quiet, quiet_rms = rms_normalize(0.02 * sine)
    assert quiet_rms == pytest.approx(0.02, rel=1e-4)
    assert quiet.square().mean().sqrt().item() == pytest.approx(0.1, rel=1e-4)
    loud_input = 0.3 * sine
    loud, loud_rms = rms_normalize(loud_input)
    assert loud_rms == pytest.approx(0.3, rel=1e-4)
    assert torch.equal(loud, loud_input)
    silence, silence_rms = rms_normalize(torch.zeros(100))  # nothing to scale, and no division by zero
    assert silence_rms == 0 and torch.equal(silence, torch.zeros(100))


def test_save_then_load_round_trip(speech_files, tmp_path):
    speech = load_audio(speech_files["24k.wav"])
    save_audio(tmp_path / "out.wav", speech)
    assert num_samples(str(tmp_path / "out.wav")) == speech.shape[0]
    torch.testing.assert_close(load_audio(tmp_path / "out.wav"), speech, rtol=0, atol=PCM_STEP)
    # the rate is written into the file: a 16 kHz save reads back as 16 kHz
    save_audio(tmp_path / "out16.wav", speech[:16_000], sampling_rate=16_000)
    assert load_audio(tmp_path / "out16.wav", sampling_rate=16_000).shape[0] == 16_000
    assert load_audio(tmp_path / "out16.wav").shape[0] == 24_000
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.wav", "out16.wav"]  # no temporary left
