"""DiTTransformerModel: parity with the f5-tts package on the same weights, save/load, text upsampling."""

import pytest
import torch

from deepdubber_hf import DiTTransformerModel
from deepdubber_hf.models.conversion_f5tts import dit_from_f5tts
from deepdubber_hf.models.embeddings import average_text_durations

f5_dit = pytest.importorskip("f5_tts.model.backbones.dit")

TINY_ARCH = dict(dim=64, depth=3, heads=4, dim_head=16, ff_mult=2, text_dim=32, conv_layers=2, text_mask_padding=True)


def randomized_f5_dit(arch=TINY_ARCH, vocab_size=40, seed=0, **extra):
    """An F5-TTS DiT whose every weight is random (its init zeroes the AdaLN and output layers)."""
    torch.manual_seed(seed)
    model = f5_dit.DiT(**dict(arch, **extra), text_num_embeds=vocab_size, mel_dim=100)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def f5_and_ours(**extra):
    reference = randomized_f5_dit(**extra)
    arch = dict(TINY_ARCH, **extra)
    ours = dit_from_f5tts(arch, reference.state_dict())
    return reference, ours


def inputs(batch=2, frames=57, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, 100, generator=g)
    cond = torch.randn(batch, frames, 100, generator=g)
    cond[:, frames // 2 :] = 0
    text = torch.randint(0, 40, (batch, 23), generator=g)
    text[1, 15:] = -1  # batch padding
    time = torch.rand(batch, generator=g)
    return x, cond, text, time


@pytest.mark.parametrize("drop_audio_cond,drop_text", [(False, False), (True, False), (True, True)])
def test_forward_matches_f5tts(drop_audio_cond, drop_text):
    reference, ours = f5_and_ours()
    x, cond, text, time = inputs()
    with torch.no_grad():
        expected = reference(x, cond, text, time, drop_audio_cond=drop_audio_cond, drop_text=drop_text)
        got = ours(x, cond, time, text_ids=text, drop_audio_cond=drop_audio_cond, drop_text=drop_text).sample
    assert (got - expected).abs().max().item() < 1e-5


def test_forward_with_mask_and_qk_norm_matches_f5tts():
    reference, ours = f5_and_ours(qk_norm="rms_norm", attn_mask_enabled=True)
    x, cond, text, time = inputs()
    mask = torch.ones(2, x.shape[1], dtype=torch.bool)
    mask[1, 40:] = False
    with torch.no_grad():
        expected = reference(x, cond, text, time, mask=mask)
        got = ours(x, cond, time, text_ids=text, attention_mask=mask).sample
    assert (got - expected).abs().max().item() < 1e-5


def test_original_f5tts_base_style_matches():
    """F5-TTS v0 Base: no filler masking in the text blocks, rotary on the first head only."""
    reference, ours = f5_and_ours(text_mask_padding=False, pe_attn_head=1)
    assert ours.config.rotary_heads == 1
    x, cond, text, time = inputs()
    with torch.no_grad():
        expected = reference(x, cond, text, time, drop_audio_cond=True, drop_text=True)
        got = ours(x, cond, time, text_ids=text, drop_audio_cond=True, drop_text=True).sample
    assert (got - expected).abs().max().item() < 1e-5


def test_average_upsampling_matches_f5tts():
    reference, ours = f5_and_ours(text_embedding_average_upsampling=True)
    assert ours.config.text_upsampling == "average"
    x, cond, text, time = inputs()
    with torch.no_grad():
        expected = reference(x, cond, text, time)
        got = ours(x, cond, time, text_ids=text).sample
    assert (got - expected).abs().max().item() < 1e-5


def test_average_upsampling_follows_given_spans():
    """Tokens spread over the spans the caller gives: reference text over the reference frames, new text after."""
    torch.manual_seed(0)
    model = DiTTransformerModel(
        num_layers=1, num_attention_heads=2, attention_head_dim=8, vocab_size=10, text_embed_dim=8,
        num_text_conv_layers=0, text_upsampling="average",
    )
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    durations = torch.cat([average_text_durations(2, 10), average_text_durations(3, 20)])[None]
    emb = model.embed_text(ids, 30, text_durations=durations)[0]
    table = model.text_embed.token_embedding.weight
    assert torch.equal(emb[:5], table[2].expand(5, -1)) and torch.equal(emb[5:10], table[3].expand(5, -1))
    assert torch.equal(emb[10:16], table[4].expand(6, -1))  # 20 frames over 3 tokens: 6, 7, 7
    assert torch.equal(emb[16:23], table[5].expand(7, -1)) and torch.equal(emb[23:30], table[6].expand(7, -1))


def test_average_text_durations_rule():
    assert average_text_durations(3, 10).tolist() == [3, 3, 4]
    assert average_text_durations(4, 4).tolist() == [1, 1, 1, 1]
    assert int(average_text_durations(7, 93).sum()) == 93


def test_precomputed_text_embeds_equal_ids():
    _, ours = f5_and_ours()
    x, cond, text, time = inputs()
    with torch.no_grad():
        direct = ours(x, cond, time, text_ids=text, drop_text=torch.tensor([False, True])).sample
        embeds = ours.embed_text(text, x.shape[1], drop_text=torch.tensor([False, True]))
        cached = ours(x, cond, time, text_embeds=embeds).sample
    assert torch.equal(direct, cached)


def test_per_sample_drop_equals_batch_drop():
    _, ours = f5_and_ours()
    x, cond, text, time = inputs()
    with torch.no_grad():
        mixed = ours(x, cond, time, text_ids=text, drop_audio_cond=torch.tensor([True, False])).sample
        dropped = ours(x[:1], cond[:1], time[:1], text_ids=text[:1], drop_audio_cond=True).sample
    assert (mixed[:1] - dropped).abs().max().item() < 1e-5


def test_save_load_round_trip(tmp_path):
    _, ours = f5_and_ours()
    ours.save_pretrained(tmp_path / "dit")
    assert (tmp_path / "dit" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = DiTTransformerModel.from_pretrained(tmp_path / "dit").eval()
    x, cond, text, time = inputs()
    with torch.no_grad():
        assert torch.equal(ours(x, cond, time, text_ids=text).sample, loaded(x, cond, time, text_ids=text).sample)


def test_fresh_model_is_zero_initialised_and_trains():
    torch.manual_seed(0)
    model = DiTTransformerModel(
        num_layers=2, num_attention_heads=2, attention_head_dim=16, vocab_size=40, text_embed_dim=16,
        num_text_conv_layers=1, dropout=0.0,
    )
    x, cond, text, time = inputs()
    assert model(x, cond, time, text_ids=text).sample.abs().max() == 0  # AdaLN-zero output
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    target = torch.randn_like(x)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.mse_loss(model(x, cond, time, text_ids=text).sample, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_base_config_parameter_count_matches_f5tts():
    """The v1 Base config builds the same number of parameters as F5-TTS's (no weights needed)."""
    with torch.device("meta"):
        arch = dict(dim=1024, depth=22, heads=16, ff_mult=2, text_dim=512, conv_layers=4)
        reference = f5_dit.DiT(**arch, text_num_embeds=2545, mel_dim=100)
        ours = DiTTransformerModel(vocab_size=2545)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(reference)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="text_upsampling"):
        DiTTransformerModel(num_layers=1, text_upsampling="nearest")
