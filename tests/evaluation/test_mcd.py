"""MCD-DTW / MCD-DTW-SL against pymcd's `Calculate_MCD` on real (espeak-ng) speech, from files and from memory."""

import shutil
import subprocess

import numpy as np
import pytest

pymcd = pytest.importorskip("pymcd.mcd")
sf = pytest.importorskip("soundfile")

from deepdubber_hf.evaluation.mcd import mcd_dtw, mcd_dtw_sl, mcd_scores, mean_mcd, mel_cepstrum
from deepdubber_hf.evaluation.metrics import load_metric

TEXT = "Where did you put the map?"
TOLERANCE = 1e-6
PAIRS = [("us", "us_f3_slow"), ("us_f3_slow", "gb_fast"), ("us", "us_f3_slow_16k"), ("gb_fast_stereo", "us")]


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """Three espeak-ng takes of one line (voices and speeds differ; 22050 Hz), one resampled to 16 kHz, one stereo."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (`make system-deps` installs it)")
    import librosa

    folder = tmp_path_factory.mktemp("mcd")
    takes = {
        "us": ["-v", "en-us"],
        "us_f3_slow": ["-v", "en-us+f3", "-s", "140"],
        "gb_fast": ["-v", "en-gb", "-s", "210", "-p", "70"],
    }
    paths = {name: str(folder / f"{name}.wav") for name in [*takes, "us_f3_slow_16k", "gb_fast_stereo"]}
    for name, options in takes.items():
        subprocess.run(["espeak-ng", "-w", paths[name], *options, TEXT], check=True, capture_output=True)
    slow, sampling_rate = sf.read(paths["us_f3_slow"], dtype="float32")
    assert sampling_rate == 22050
    sf.write(paths["us_f3_slow_16k"], librosa.resample(slow, orig_sr=22050, target_sr=16000), 16000)
    fast, _ = sf.read(paths["gb_fast"], dtype="float32")
    sf.write(paths["gb_fast_stereo"], np.stack([fast, 0.3 * fast[::-1]], axis=1), 22050)  # librosa averages channels
    return paths


@pytest.fixture(scope="module")
def scores(voices):
    """(ours, pymcd's) scores of a pair of takes, each computed once for the module."""
    cache = {}

    def get(reference, synthesized):
        if (reference, synthesized) not in cache:
            paths = voices[reference], voices[synthesized]
            theirs = {
                "mcd_dtw": pymcd.Calculate_MCD(MCD_mode="dtw").calculate_mcd(*paths),
                "mcd_dtw_sl": pymcd.Calculate_MCD(MCD_mode="dtw_sl").calculate_mcd(*paths),
            }
            cache[reference, synthesized] = mcd_scores(*paths), theirs
        return cache[reference, synthesized]

    return get


@pytest.mark.parametrize("reference, synthesized", PAIRS)
def test_equal_to_pymcd(scores, reference, synthesized):
    ours, theirs = scores(reference, synthesized)
    for key in ("mcd_dtw", "mcd_dtw_sl"):
        assert abs(ours[key] - theirs[key]) <= TOLERANCE, (key, ours[key], theirs[key])
    assert 1.0 < ours["mcd_dtw"] < ours["mcd_dtw_sl"]  # different voices and lengths: a distance, then a penalty


def test_audio_in_memory_scores_as_its_file(voices, scores):
    for name in ("us_f3_slow", "us_f3_slow_16k"):
        waveform, sampling_rate = sf.read(voices[name], dtype="float32")
        expected = mel_cepstrum(voices[name])
        assert np.array_equal(mel_cepstrum((waveform, sampling_rate)), expected)
        assert np.array_equal(mel_cepstrum({"array": waveform, "sampling_rate": sampling_rate, "path": None}), expected)
        assert np.array_equal(mel_cepstrum(waveform, sampling_rate=sampling_rate), expected)

    ours, _ = scores("us", "us_f3_slow_16k")
    reference, _ = sf.read(voices["us"], dtype="float32")
    synthesized, _ = sf.read(voices["us_f3_slow_16k"], dtype="float32")
    assert mcd_dtw((reference, 22050), (synthesized, 16000)) == ours["mcd_dtw"]
    assert mcd_dtw_sl((reference, 22050), (synthesized, 16000)) == ours["mcd_dtw_sl"]


def test_identical_audio_scores_zero(voices):
    zero = {"mcd_dtw": 0.0, "mcd_dtw_sl": 0.0}
    assert mcd_scores(voices["gb_fast"], voices["gb_fast"]) == zero
    assert pymcd.Calculate_MCD(MCD_mode="dtw_sl").calculate_mcd(voices["gb_fast"], voices["gb_fast"]) == 0.0


def test_evaluate_module_gives_the_mean_over_pairs(voices, scores):
    pairs = PAIRS[:2]
    result = load_metric("mcd").compute(
        predictions=[voices[synthesized] for _, synthesized in pairs],
        references=[voices[reference] for reference, _ in pairs],
    )
    for key in ("mcd_dtw", "mcd_dtw_sl"):
        assert abs(result[key] - np.mean([scores(*pair)[1][key] for pair in pairs])) <= TOLERANCE


def test_bad_input_raises_a_clear_error(voices, tmp_path):
    speech, _ = sf.read(voices["us"], dtype="float32")
    with pytest.raises(FileNotFoundError, match="reference audio file .*missing.wav"):
        mcd_scores(str(tmp_path / "missing.wav"), voices["us"])
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 22050)
    with pytest.raises(ValueError, match="reference audio .*empty.wav.* is empty"):
        mcd_scores(str(tmp_path / "empty.wav"), voices["us"])
    with pytest.raises(ValueError, match="synthesized waveform is empty"):
        mcd_scores(voices["us"], (np.zeros(0, dtype=np.float32), 16000))
    with pytest.raises(ValueError, match="synthesized waveform is silent"):
        mcd_scores(voices["us"], (np.zeros(22050, dtype=np.float32), 22050))
    with pytest.raises(ValueError, match="NaN"):
        mcd_scores(voices["us"], (np.full(100, np.nan, dtype=np.float32), 22050))
    with pytest.raises(ValueError, match=r"shape \(2, \d+\): give one mono channel"):
        mcd_scores(voices["us"], (np.stack([speech, speech]), 22050))
    with pytest.raises(ValueError, match="dtype int16: give float samples"):
        mcd_scores(voices["us"], ((speech * 32767).astype(np.int16), 22050))
    with pytest.raises(ValueError, match="no sampling rate"):
        mcd_scores(voices["us"], speech)
    with pytest.raises(ValueError, match="carries sampling rate 22050 but `sampling_rate=16000`"):
        mcd_scores(voices["us"], (speech, 22050), sampling_rate=16000)
    with pytest.raises(ValueError, match="one of each per clip"):
        mean_mcd([voices["us"]], [])
