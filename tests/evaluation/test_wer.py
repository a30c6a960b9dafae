"""WER normalisation, and the offline Whisper-base transcribing real synthetic speech."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepdubber_hf.evaluation.wer import normalize_text, number_to_words, word_error_rate

REPO = Path(__file__).resolve().parents[2]


def test_normalisation():
    assert number_to_words(1204) == "one thousand two hundred four"
    assert normalize_text("Where's the MAP?! It cost 1,000 dollars.") == "where's the map it cost one thousand dollars"
    assert normalize_text("‘Quoted’ — words…") == "quoted words"
    assert word_error_rate(["the cat sat"], ["The cat, sat!"]) == 0.0
    assert word_error_rate(["the cat sat", "a dog"], ["the cat", "a dog ran"]) == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="one of each"):
        word_error_rate(["a"], [])


def test_ground_truth_wer_of_a_generated_corpus_goes_into_its_card(tmp_path):
    pytest.importorskip("faster_whisper")
    from deepdubber_hf.data.corpus import generate_corpus

    corpus = tmp_path / "corpus"
    generate_corpus(str(corpus), level=1, num_clips=3, seed=3, test_fraction=0.5, progress=False)
    result = subprocess.run([sys.executable, str(REPO / "dataset_scripts" / "measure_ground_truth_wer.py"),
                             str(corpus), "--compute_type", "int8"], capture_output=True, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr
    report = json.loads((corpus / "eval" / "ground_truth_wer.json").read_text())
    (row,) = report["results"]
    assert row["config"] == "level1" and row["split"] == "test" and row["clips"] == 2
    assert row["wer"] < 0.6  # clean synthetic everyday sentences: Whisper-base gets most words
    assert "Intelligibility of the ground-truth speech" in (corpus / "README.md").read_text()
