"""VocosVocoder against the vocos package on the same (random) weights, in the official checkpoint layout."""

import pytest
import torch
import yaml
from vocos import Vocos

from deepdubber_hf.audio import log_mel_spectrogram
from deepdubber_hf.models import VocosVocoder

# charactr/vocos-mel-24khz's config.yaml
OFFICIAL_HPARAMS = {
    "feature_extractor": {
        "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
        "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"},
    },
    "backbone": {
        "class_path": "vocos.models.VocosBackbone",
        "init_args": {"input_channels": 100, "dim": 512, "intermediate_dim": 1536, "num_layers": 8},
    },
    "head": {
        "class_path": "vocos.heads.ISTFTHead",
        "init_args": {"dim": 512, "n_fft": 1024, "hop_length": 256, "padding": "center"},
    },
}


def tiny_hparams(padding="center"):
    hparams = yaml.safe_load(yaml.safe_dump(OFFICIAL_HPARAMS))
    hparams["backbone"]["init_args"].update(dim=32, intermediate_dim=64, num_layers=2)
    hparams["head"]["init_args"].update(dim=32, padding=padding)
    hparams["feature_extractor"]["init_args"]["padding"] = padding
    return hparams


def write_vocos_checkpoint(folder, hparams):
    """A folder in the official layout holding a vocos.Vocos with randomised (seeded) weights."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(hparams, sort_keys=False))
    reference = Vocos.from_hparams(str(folder / "config.yaml"))
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in reference.parameters():
            # Vocos initialises gamma (layer scale) at 1/num_layers and the head near zero; random weights of
            # unit-ish scale exercise every path, exp/clip of the magnitude included.
            parameter.copy_(torch.randn_like(parameter) * 0.05)
    torch.save(reference.state_dict(), folder / "pytorch_model.bin")
    return reference.eval()


def speech_like_mel(num_frames=40, batch_size=2):
    torch.manual_seed(1)
    waveform = 0.1 * torch.randn(batch_size, (num_frames - 1) * 256)
    return log_mel_spectrogram(waveform)  # (b, 100, n)


@pytest.mark.parametrize("padding", ["center", "same"])
def test_tiny_checkpoint_matches_vocos_and_round_trips(tmp_path, padding):
    reference = write_vocos_checkpoint(tmp_path / "vocos", tiny_hparams(padding))
    vocoder = VocosVocoder.from_vocos_checkpoint(tmp_path / "vocos")
    assert not vocoder.training
    assert vocoder.config.hidden_size == 32 and vocoder.config.padding == padding
    expected_keys = {key for key in reference.state_dict() if not key.startswith("feature_extractor.")}
    assert set(vocoder.state_dict()) == expected_keys

    mel = speech_like_mel()
    with torch.no_grad():
        waveform = vocoder.decode(mel)
    expected = reference.decode(mel)
    assert waveform.shape == expected.shape
    assert (waveform - expected).abs().max().item() == 0

    # unbatched in, unbatched out (batched kernels may round differently, hence allclose)
    with torch.no_grad():
        torch.testing.assert_close(vocoder(mel[0]), waveform[0], rtol=1e-5, atol=1e-6)

    vocoder.save_pretrained(tmp_path / "diffusers")
    reloaded = VocosVocoder.from_pretrained(tmp_path / "diffusers")
    assert {k: v for k, v in reloaded.config.items() if not k.startswith("_")} == {
        k: v for k, v in vocoder.config.items() if not k.startswith("_")
    }
    with torch.no_grad():
        assert torch.equal(reloaded(mel), waveform)


def test_official_size_checkpoint_matches_vocos(tmp_path):
    reference = write_vocos_checkpoint(tmp_path / "vocos-mel-24khz", OFFICIAL_HPARAMS)
    vocoder = VocosVocoder.from_vocos_checkpoint(tmp_path / "vocos-mel-24khz")
    expected_config = {
        "num_mel_bins": 100,
        "hidden_size": 512,
        "intermediate_size": 1536,
        "num_layers": 8,
        "n_fft": 1024,
        "hop_length": 256,
        "padding": "center",
        "sampling_rate": 24000,
    }
    assert {key: vocoder.config[key] for key in expected_config} == expected_config
    mel = speech_like_mel(num_frames=20, batch_size=1)
    with torch.no_grad():
        waveform = vocoder.decode(mel)
    assert waveform.shape == (1, 19 * 256)
    assert (waveform - reference.decode(mel)).abs().max().item() == 0


def test_channel_last_mel_is_refused():
    vocoder = VocosVocoder(hidden_size=8, intermediate_size=16, num_layers=1)
    with pytest.raises(ValueError, match="transpose"):
        vocoder(torch.zeros(1, 30, 100))


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.yaml.*vocos-mel-24khz"):
        VocosVocoder.from_vocos_checkpoint(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_hparams()))
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        VocosVocoder.from_vocos_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda h: h["feature_extractor"].update(class_path="vocos.feature_extractors.EncodecFeatures"),
            "EncodecFeatures",
        ),
        (lambda h: h["head"].update(class_path="vocos.heads.IMDCTCosHead"), "IMDCTCosHead"),
        (lambda h: h["backbone"]["init_args"].update(adanorm_num_embeddings=4), "adanorm_num_embeddings"),
        (lambda h: h["head"]["init_args"].update(dim=64), "backbone.dim vs head.dim"),
        (lambda h: h.pop("head"), "not a Vocos config"),
        (lambda h: h["backbone"]["init_args"].pop("num_layers"), "num_layers"),
    ],
)
def test_bad_config_is_refused(tmp_path, edit, message):
    write_vocos_checkpoint(tmp_path, tiny_hparams())
    hparams = tiny_hparams()
    edit(hparams)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(hparams))
    with pytest.raises(ValueError, match=message):
        VocosVocoder.from_vocos_checkpoint(tmp_path)


def test_weights_from_another_config_are_refused(tmp_path):
    write_vocos_checkpoint(tmp_path, tiny_hparams())
    hparams = tiny_hparams()
    hparams["backbone"]["init_args"]["num_layers"] = 3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(hparams))
    with pytest.raises(ValueError, match="missing keys.*convnext.2"):
        VocosVocoder.from_vocos_checkpoint(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# GriffinLimVocoder
# ----------------------------------------------------------------------------------------------------------------


def spectral_error(waveform, copy):
    """Relative distance of two waveforms' mel magnitudes (phase-blind)."""
    original, rebuilt = log_mel_spectrogram(waveform).exp(), log_mel_spectrogram(copy).exp()
    frames = min(original.shape[-1], rebuilt.shape[-1])
    return float((original[:, :frames] - rebuilt[:, :frames]).norm() / original[:, :frames].norm())


def test_griffin_lim_rebuilds_real_speech_from_its_mel(clip, tmp_path):
    from deepdubber_hf.audio import load_audio
    from deepdubber_hf.models import GriffinLimVocoder

    (tmp_path / "speech.wav").write_bytes(clip[1]["reference_audio"]["bytes"])  # espeak-ng / piper speech
    waveform = load_audio(tmp_path / "speech.wav")
    mel = log_mel_spectrogram(waveform)
    copy = GriffinLimVocoder()(mel)
    assert copy.shape == ((mel.shape[-1] - 1) * 256,)
    # The phase iterations matter: random phases alone smear the spectrum much more.
    unrefined = GriffinLimVocoder(num_iterations=0)(mel)
    assert spectral_error(waveform, copy) < 0.35
    assert spectral_error(waveform, copy) < 0.6 * spectral_error(waveform, unrefined)
    # Deterministic by default, batched like the unbatched call.
    assert torch.equal(GriffinLimVocoder()(mel), copy)
    batched = GriffinLimVocoder()(torch.stack([mel, mel]))
    assert torch.allclose(batched[0], copy, atol=1e-5) and batched.shape == (2, copy.shape[0])


def test_griffin_lim_in_a_pipeline_round_trips(tmp_path, caplog):
    from deepdubber_hf import DeepDubberPipeline, DeepDubberTokenizer, DiTTransformerModel, FlowMatchSwayScheduler
    from deepdubber_hf.models import GriffinLimVocoder

    tokenizer = DeepDubberTokenizer.from_texts(["Where did you put the map?"], tmp_path / "tok")
    torch.manual_seed(0)
    transformer = DiTTransformerModel(num_layers=1, num_attention_heads=2, attention_head_dim=16,
                                      vocab_size=tokenizer.vocab_size, text_embed_dim=16, num_text_conv_layers=1)
    pipe = DeepDubberPipeline(transformer, FlowMatchSwayScheduler(), GriffinLimVocoder(num_iterations=4), tokenizer)
    first = pipe("Where did you put the map?", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = DeepDubberPipeline.from_pretrained(tmp_path / "pipe")
    assert type(loaded.vocoder) is GriffinLimVocoder and loaded.vocoder.config.num_iterations == 4
    again = loaded("Where did you put the map?", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert (first.audios[0] == again.audios[0]).all()
    with pytest.raises(ValueError, match="transpose"):
        loaded.vocoder(torch.randn(1, 50, 100))
