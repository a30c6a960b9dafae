"""SPK-SIM and EMO-SIM on real synthetic speech (espeak-ng voices), with GE2E and tiny random transformers models."""

import shutil
import subprocess

import numpy as np
import pytest
import torch

from deepdubber_hf.audio import load_audio
from deepdubber_hf.evaluation.emotion import (
    UNAVAILABLE_REASON,
    Wav2Vec2EmotionEncoder,
    emotion_similarity,
    load_emotion_encoder,
)
from deepdubber_hf.evaluation.metrics import load_metric, metric_names
from deepdubber_hf.evaluation.speaker import (
    GE2ESpeakerEncoder,
    WavLMSpeakerEncoder,
    load_speaker_encoder,
    speaker_similarity,
)

SENTENCE_A = "The weather today is cold and the streets are empty."
SENTENCE_B = "She opened the door and looked out at the quiet garden."
TINY_AUDIO_MODEL = {  # hidden 16, 2 layers, a 160x-downsampling feature encoder (100 frames per second)
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "conv_dim": (8, 8),
    "conv_stride": (10, 16),
    "conv_kernel": (10, 16),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The models here are tiny: one thread, so that spinning thread pools do not fight over the 2 shared cores."""
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(num_threads)


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """Two espeak-ng voices (male m3, female f3), each saying two different sentences: {"m3_a": path, ...}."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: apt-get install espeak-ng")
    folder = tmp_path_factory.mktemp("voices")
    paths = {}
    for voice in ("m3", "f3"):
        for key, sentence in (("a", SENTENCE_A), ("b", SENTENCE_B)):
            path = folder / f"{voice}_{key}.wav"
            subprocess.run(["espeak-ng", "-w", str(path), "-v", f"en-us+{voice}", sentence], check=True)
            paths[f"{voice}_{key}"] = str(path)
    return paths


@pytest.fixture(scope="module")
def ge2e():
    return GE2ESpeakerEncoder()


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory):
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    torch.manual_seed(0)
    config = WavLMConfig(**TINY_AUDIO_MODEL, num_buckets=32, max_bucket_distance=64, tdnn_dim=(8, 8),
                         tdnn_kernel=(3, 1), tdnn_dilation=(1, 1), xvector_output_dim=8)
    folder = tmp_path_factory.mktemp("tiny_wavlm")
    WavLMForXVector(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_emotion(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    labels = ["neutral", "happy", "angry", "sad"]
    config = Wav2Vec2Config(**TINY_AUDIO_MODEL, classifier_proj_size=8, num_labels=4,
                            id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    folder = tmp_path_factory.mktemp("tiny_emotion")
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return str(folder)


def test_ge2e_same_voice_is_closer_than_another_voice(voices, ge2e):
    result = speaker_similarity(
        [voices["m3_a"], voices["f3_a"], voices["m3_a"], voices["m3_a"], voices["f3_b"]],
        [voices["m3_b"], voices["f3_b"], voices["f3_a"], voices["f3_b"], voices["m3_b"]],
        encoder=ge2e,
    )
    same_male, same_female, *different = result["per_pair"]
    # Different sentences in one voice beat the other voice, even saying the same sentence (pair 3).
    assert min(same_male, same_female) > max(different) + 0.15, result
    assert all(0.0 <= cosine <= 1.0 + 1e-6 for cosine in result["per_pair"])  # GE2E embeddings are non-negative
    assert result["num_pairs"] == 5 and result["encoder"] == "GE2E (resemblyzer)"
    assert result["spk_sim"] == pytest.approx(np.mean(result["per_pair"]))

    identical = speaker_similarity([voices["m3_a"]], [voices["m3_a"]], encoder=ge2e)
    assert identical["spk_sim"] == pytest.approx(1.0, abs=1e-5)


def test_audio_forms_agree(voices, ge2e):
    path = voices["m3_a"]
    by_path = speaker_similarity([path], [voices["m3_b"]], encoder=ge2e)["spk_sim"]
    waveform_24k = load_audio(path)  # the project's 24 kHz
    as_dict = speaker_similarity([{"array": waveform_24k.numpy(), "sampling_rate": 24000}], [voices["m3_b"]],
                                 encoder=ge2e)["spk_sim"]
    as_bare = speaker_similarity([waveform_24k], [voices["m3_b"]], encoder=ge2e, sampling_rate=24000)["spk_sim"]
    assert as_dict == pytest.approx(by_path, abs=0.01)  # resampled twice (22.05 → 24 → 16 kHz) instead of once
    assert as_bare == pytest.approx(as_dict, abs=1e-6)
    with pytest.raises(ValueError, match="sampling_rate="):  # a bare waveform's rate is never guessed
        speaker_similarity([waveform_24k], [voices["m3_b"]], encoder=ge2e)


def test_bad_inputs_raise_clear_errors(voices, ge2e, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"references\[0\].*missing.wav"):
        speaker_similarity([voices["m3_a"]], [str(tmp_path / "missing.wav")], encoder=ge2e)
    with pytest.raises(ValueError, match="empty"):
        speaker_similarity([], [], encoder=ge2e)
    with pytest.raises(ValueError, match="2 generated clips but 1 references"):
        speaker_similarity([voices["m3_a"], voices["f3_a"]], [voices["m3_b"]], encoder=ge2e)
    with pytest.raises(TypeError, match="wrap it in a list"):
        speaker_similarity(voices["m3_a"], voices["m3_b"], encoder=ge2e)
    with pytest.raises(ValueError, match=r"generated\[0\].*silent"):  # an error, not a NaN score
        speaker_similarity([(np.zeros(16000), 16000)], [voices["m3_b"]], encoder=ge2e)
    with pytest.raises(ValueError, match="needs model_name_or_path"):
        load_speaker_encoder("wavlm")
    with pytest.raises(ValueError, match="choose 'ge2e' or 'wavlm'"):
        load_speaker_encoder("ecapa")
    # The emotion metric checks the pairing even when it has no backend to score with.
    with pytest.raises(ValueError, match="2 generated clips but 1 references"):
        emotion_similarity([voices["m3_a"], voices["f3_a"]], [voices["m3_b"]])


def test_wavlm_backend_loads_a_local_checkpoint(voices, tiny_wavlm, tiny_emotion):
    encoder = load_speaker_encoder("wavlm", tiny_wavlm)
    assert isinstance(encoder, WavLMSpeakerEncoder) and encoder.sampling_rate == 16000
    embedding = encoder.embed(voices["m3_a"])
    assert embedding.shape == (8,) and np.all(np.isfinite(embedding))

    result = speaker_similarity([voices["m3_a"], voices["m3_a"], voices["m3_a"]],
                                [voices["m3_a"], voices["f3_b"], voices["m3_b"]], encoder=encoder)
    assert result["per_pair"][0] == pytest.approx(1.0, abs=1e-6)
    assert all(-1.0 - 1e-6 <= cosine <= 1.0 + 1e-6 for cosine in result["per_pair"])
    assert result["per_pair"][1] < 1.0 - 1e-6  # other audio, another embedding
    with pytest.raises(ValueError, match="not WavLM"):
        load_speaker_encoder("wavlm", tiny_emotion)  # a wav2vec2 checkpoint


def test_wavlm_backend_refuses_a_checkpoint_without_its_xvector_head(tmp_path):
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    WavLMModel(WavLMConfig(**TINY_AUDIO_MODEL, num_buckets=32, max_bucket_distance=64)).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a trained WavLMForXVector checkpoint.*randomly initialised"):
        load_speaker_encoder("wavlm", str(tmp_path))


def test_emotion_backend_pooled_is_what_the_classifier_reads(voices, tiny_emotion):
    encoder = load_emotion_encoder(model_name_or_path=tiny_emotion)
    assert isinstance(encoder, Wav2Vec2EmotionEncoder) and encoder.labels == ["neutral", "happy", "angry", "sad"]
    pooled = encoder.embed(voices["f3_a"])
    assert pooled.shape == (8,)  # classifier_proj_size

    model = encoder.model
    waveform = load_audio(voices["f3_a"], sampling_rate=16000)
    inputs = encoder.feature_extractor(waveform.numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        hidden = model.wav2vec2(inputs["input_values"]).last_hidden_state  # (1, n, 16)
        expected = model.projector(hidden).mean(dim=1)[0]  # wav2vec2's mean pooling
        logits = model(inputs["input_values"]).logits[0]
    np.testing.assert_allclose(pooled, expected.numpy(), atol=1e-5)

    probabilities = load_emotion_encoder("wav2vec2", tiny_emotion, embedding="probabilities").embed(voices["f3_a"])
    np.testing.assert_allclose(probabilities, logits.softmax(-1).numpy(), atol=1e-5)
    assert probabilities.sum() == pytest.approx(1.0) and np.all(probabilities >= 0)

    result = emotion_similarity([voices["f3_a"], voices["f3_a"]], [voices["f3_a"], voices["m3_b"]], encoder=encoder)
    assert result["available"] is True and result["num_pairs"] == 2
    assert result["per_pair"][0] == pytest.approx(1.0, abs=1e-6)
    assert -1.0 - 1e-6 <= result["per_pair"][1] <= 1.0 + 1e-6
    assert result["emo_sim"] == pytest.approx(np.mean(result["per_pair"]))
    with pytest.raises(ValueError, match="choose 'pooled' or 'probabilities'"):
        load_emotion_encoder(model_name_or_path=tiny_emotion, embedding="logits")


def test_emotion_backend_refuses_a_checkpoint_without_a_trained_head(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    Wav2Vec2Model(Wav2Vec2Config(**TINY_AUDIO_MODEL)).save_pretrained(tmp_path)  # no projector, no classifier
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="classifier.weight.*randomly initialised"):
        load_emotion_encoder(model_name_or_path=str(tmp_path))


def test_emotion_without_a_backend_is_reported_unavailable(voices, tmp_path):
    assert load_emotion_encoder() is None
    report = emotion_similarity([voices["m3_a"]], [voices["m3_b"]])
    assert report == {"emo_sim": None, "per_pair": None, "available": False, "reason": UNAVAILABLE_REASON}
    assert not any(isinstance(value, (int, float)) and not isinstance(value, bool) for value in report.values())
    with pytest.raises(ValueError, match="needs model_name_or_path"):
        load_emotion_encoder("wav2vec2")
    with pytest.raises(ValueError, match="choose 'wav2vec2'"):
        load_emotion_encoder("emotion2vec", "some/path")
    with pytest.raises(OSError, match="could not load the emotion model"):  # asked for, missing: an error
        load_emotion_encoder(model_name_or_path=str(tmp_path / "no-such-model"))


def test_evaluate_modules_agree_with_the_library(voices, ge2e, tiny_wavlm, tiny_emotion):
    assert {"spk_sim", "emo_sim"} <= set(metric_names())
    predictions = [voices["m3_a"], voices["f3_a"]]
    references = [voices["m3_b"], voices["m3_b"]]

    spk_sim = load_metric("spk_sim")
    result = spk_sim.compute(predictions=predictions, references=references)
    expected = speaker_similarity(predictions, references, encoder=ge2e)
    assert result["per_pair"] == pytest.approx(expected["per_pair"], abs=1e-6)
    assert result["spk_sim"] == pytest.approx(expected["spk_sim"], abs=1e-6)
    wavlm = spk_sim.compute(predictions=predictions, references=references, backend="wavlm",
                            model_name_or_path=tiny_wavlm)
    expected = speaker_similarity(predictions, references, encoder=WavLMSpeakerEncoder(tiny_wavlm))
    assert wavlm["per_pair"] == pytest.approx(expected["per_pair"], abs=1e-6)
    with pytest.raises(ValueError):
        spk_sim.compute(predictions=predictions, references=references[:1])

    assert load_metric("emo_sim").compute(predictions=predictions, references=references)["available"] is False
    emo_sim = load_metric("emo_sim", model_name_or_path=tiny_emotion)
    result = emo_sim.compute(predictions=predictions, references=references)
    expected = emotion_similarity(predictions, references, encoder=Wav2Vec2EmotionEncoder(tiny_emotion))
    assert result["available"] is True
    assert result["per_pair"] == pytest.approx(expected["per_pair"], abs=1e-6)
