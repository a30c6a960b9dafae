"""The paper's tables and the mel-spectrogram figure of a dubbing evaluation."""

import numpy as np
import pytest

from deepdubber_hf.evaluation.report import TABLE_COLUMNS, plot_mel_comparison, results_to_markdown


def test_tables_follow_the_papers_columns_and_never_invent_a_number():
    scores = {"spk_sim": 0.8342, "wer": 0.232, "emo_sim": None, "mcd_dtw": 8.541, "mcd_dtw_sl": 8.544,
              "accuracy": 0.86, "average_recall": 0.8584,
              "recall": {"dialogue": 0.8633, "monologue": 0.732, "narration": 0.98}}  # fmt: skip
    table = results_to_markdown({"MPO + F&O": scores}, "initial-reasoning", title=None).splitlines()
    assert table[0].startswith("### Initial reasoning")
    header, row = table[2], table[4]
    assert header.split(" | ")[1:6] == ["Ave.Acc (%) ↑", "Ave.Recall (%) ↑", "A.Recall (%) ↑", "B.Recall (%) ↑",
                                        "C.Recall (%) ↑"]  # fmt: skip
    assert row == "| MPO + F&O | 86.00 | 85.84 | 86.33 | 73.20 | 98.00 | 83.42 | 23.20 | 8.54 | 8.54 |"
    # Dub 2.0 shows EMO-SIM and the lip-sync scores: absent ones are "n/a", not zero.
    row = results_to_markdown({"Ours": scores}, "2.0", title="").splitlines()[2]
    assert row == "| Ours | 83.42 | 23.20 | n/a | 8.54 | 8.54 | n/a | n/a |"
    assert len(TABLE_COLUMNS["ablation"]) == 7
    with pytest.raises(ValueError, match="table must be one of"):
        results_to_markdown({"x": scores}, "4.0")
    with pytest.raises(ValueError, match="results is empty"):
        results_to_markdown({}, "1.0")


def test_mel_comparison_is_a_png_with_one_panel_per_system(tmp_path):
    t = np.linspace(0, 1, 24000, dtype=np.float32)
    path = plot_mel_comparison({"GT": np.sin(2 * np.pi * 300 * t), "Ours": np.sin(2 * np.pi * 900 * t[:12000])},
                               tmp_path / "mel.png", title="Where did you put the map?")  # fmt: skip
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(ValueError, match="mono waveform"):
        plot_mel_comparison({"GT": np.zeros((2, 100), dtype=np.float32)}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=".png"):
        plot_mel_comparison({"GT": t}, tmp_path / "mel.jpg")
