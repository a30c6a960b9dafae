"""DeepDubberPipeline: sampling parity with F5-TTS's CFM.sample, save/load, batching, callbacks, errors."""

import numpy as np
import pytest
import torch

from deepdubber_hf import DeepDubberPipeline, DeepDubberTokenizer, FlowMatchSwayScheduler, VocosVocoder
from deepdubber_hf.audio import log_mel_spectrogram
from deepdubber_hf.models.conversion_f5tts import dit_from_f5tts

f5_dit = pytest.importorskip("f5_tts.model.backbones.dit")
f5_cfm = pytest.importorskip("f5_tts.model.cfm")

ARCH = dict(dim=64, depth=2, heads=4, dim_head=16, ff_mult=2, text_dim=32, conv_layers=1, text_mask_padding=True)
CORPUS = ["Where did you put the map?", "I left it on the table.", "The quick brown fox jumps over the lazy dog!"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return DeepDubberTokenizer.from_texts(CORPUS, tmp_path_factory.mktemp("tokenizer"))


def reference_wave(seconds=0.6, seed=3):
    """A loud (RMS > 0.1, so F5's normalisation leaves it alone) harmonic signal at 24 kHz."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(24000 * seconds)) / 24000
    wave = sum(0.3 / k * torch.sin(2 * torch.pi * 140 * k * t) for k in range(1, 6))
    return (wave + 0.01 * torch.randn(t.shape, generator=g)).float()


def make_pair(tokenizer, **arch_extra):
    torch.manual_seed(0)
    arch = dict(ARCH, **arch_extra)
    reference = f5_dit.DiT(**arch, text_num_embeds=tokenizer.vocab_size, mel_dim=100)
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    reference.eval()
    transformer = dit_from_f5tts(arch, reference.state_dict())
    torch.manual_seed(1)
    vocoder = VocosVocoder(hidden_size=32, intermediate_size=64, num_layers=1).eval()
    pipe = DeepDubberPipeline(transformer, FlowMatchSwayScheduler(), vocoder, tokenizer)
    pipe.set_progress_bar_config(disable=True)
    return reference, pipe


@pytest.mark.parametrize("ode_method", ["euler", "midpoint"])
def test_sampling_matches_f5tts_cfm(tokenizer, ode_method):
    reference, pipe = make_pair(tokenizer)
    pipe.scheduler = FlowMatchSwayScheduler(ode_method=ode_method)
    wave = reference_wave()
    ref_text, text = "I left it on the table.", "Where did you put the map?"
    new_frames = 70
    ref_mel = log_mel_spectrogram(wave[None]).transpose(1, 2)  # (1, n_ref, 100)
    total = ref_mel.shape[1] + new_frames

    vocab = tokenizer.get_vocab()
    cfm = f5_cfm.CFM(transformer=reference, vocab_char_map=vocab, odeint_kwargs=dict(method=ode_method))
    torch.manual_seed(42)
    expected, _ = cfm.sample(ref_mel, [ref_text + " " + text], total, steps=8, cfg_strength=2.0,
                             sway_sampling_coef=-1.0)

    out = pipe(text, reference_audio=wave, reference_text=ref_text, duration_in_s=(new_frames + 0.5) / 93.75,
               num_inference_steps=8, guidance_scale=2.0, sway_sampling_coef=-1.0,
               generator=torch.Generator().manual_seed(42), output_type="mel")
    got = out.audios[0]
    assert got.shape == (new_frames, 100)
    assert (got - expected[0, ref_mel.shape[1]:]).abs().max().item() < 1e-4


def test_save_load_gives_identical_audio(tokenizer, tmp_path):
    _, pipe = make_pair(tokenizer)
    first = pipe("Where is the map?", generator=torch.Generator().manual_seed(0), num_inference_steps=2)
    pipe.save_pretrained(tmp_path / "pipe")
    for sub in ("transformer", "scheduler", "vocoder", "tokenizer"):
        assert (tmp_path / "pipe" / sub).is_dir()
    loaded = DeepDubberPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.tokenizer, DeepDubberTokenizer) and isinstance(loaded.vocoder, VocosVocoder)
    second = loaded("Where is the map?", generator=torch.Generator().manual_seed(0), num_inference_steps=2)
    assert first.sampling_rate == 24000
    assert isinstance(first.audios[0], np.ndarray) and first.audios[0].ndim == 1
    np.testing.assert_array_equal(first.audios[0], second.audios[0])


def test_batch_of_different_lengths_and_saved_wav(tokenizer, tmp_path):
    _, pipe = make_pair(tokenizer)
    out = pipe(["The map?", "The quick brown fox jumps over the lazy dog!"], duration_in_s=[0.5, 1.2],
               num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert [round(d, 2) for d in out.duration_in_s] == [round(46 * 256 / 24000, 2), round(112 * 256 / 24000, 2)]
    assert out.audios[0].shape[0] < out.audios[1].shape[0]
    out.save_audio(tmp_path / "a.wav", index=1)
    from deepdubber_hf.audio import load_audio

    assert abs(load_audio(tmp_path / "a.wav").shape[0] - out.audios[1].shape[0]) <= 1


def test_duration_follows_reference_rate(tokenizer):
    _, pipe = make_pair(tokenizer)
    wave = reference_wave(seconds=1.0)
    ref_text = "I left it on the table."
    text = "Where did you put the map?"
    out = pipe(text, reference_audio=wave, reference_text=ref_text, num_inference_steps=1, output_type="mel")
    ref_frames = log_mel_spectrogram(wave).shape[-1]
    expected = int(ref_frames / len((ref_text + " ").encode()) * len(text.encode()))
    assert out.audios[0].shape[0] == expected


def test_callback_sees_every_step_and_can_edit_latents(tokenizer):
    _, pipe = make_pair(tokenizer)
    seen = []

    def callback(pipeline, i, t, kwargs):
        seen.append((i, float(t)))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = pipe("Where?", duration_in_s=0.3, num_inference_steps=3, guidance_scale=0.0, output_type="mel",
               callback_on_step_end=callback)
    assert [i for i, _ in seen] == [0, 1, 2]
    assert torch.count_nonzero(out.audios[0]) == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(text=""), "empty"),
        (dict(text="Hi there", reference_audio=reference_wave()), "reference_text"),
        (dict(text="Hi there", duration_in_s=-1.0), "duration_in_s"),
        (dict(text="Hi there", output_type="wav"), "output_type"),
        (dict(text="Hi there", reference_audio="/no/such/file.wav", reference_text="x"), "does not exist"),
    ],
)
def test_bad_input_is_a_clear_error(tokenizer, kwargs, match):
    _, pipe = make_pair(tokenizer)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        pipe(num_inference_steps=1, **kwargs)


def test_average_upsampling_pipeline_runs(tokenizer):
    _, pipe = make_pair(tokenizer, text_embedding_average_upsampling=True)
    out = pipe("Where did you put the map?", reference_audio=reference_wave(), reference_text="I left it on the table.",
               num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.audios[0]).all() and out.audios[0].ndim == 1
