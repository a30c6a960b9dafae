import pytest
import torch

from deepdubber_hf import DeepDubberControlNetModel, DiTTransformerModel

N, DV, DC = 40, 8, 12


def base_model():
    torch.manual_seed(0)
    model = DiTTransformerModel(num_layers=4, num_attention_heads=2, attention_head_dim=16, vocab_size=32,
                                text_embed_dim=16, num_text_conv_layers=1, dropout=0.0)  # fmt: skip
    with torch.no_grad():  # a base that does something (AdaLN-zero starts as the identity)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def inputs(batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, N, 100, generator=g)
    return {
        "hidden_states": mel,
        "cond": torch.zeros_like(mel),
        "timestep": torch.full((batch,), 0.4),
        "text_ids": torch.randint(0, 32, (batch, 7), generator=g),
    }


def conditions(batch=2, seed=2):
    g = torch.Generator().manual_seed(seed)
    return {"video_features": torch.randn(batch, N, DV, generator=g),
            "condition_embeds": torch.randn(batch, 5, DC, generator=g),
            "condition_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]][:batch]).bool()}  # fmt: skip


def trained_controlnet(base, steps=3):
    """A ControlNet after a few steps that push the base's output towards a target: its residuals are no longer 0."""
    controlnet = DeepDubberControlNetModel.from_transformer(base, num_layers=2, video_dim=DV, condition_dim=DC)
    base.requires_grad_(False)
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=1e-2)
    x, c = inputs(), conditions()
    for _ in range(steps):
        residuals = controlnet(**x, **c).controlnet_block_samples
        out = base(**x, block_controlnet_hidden_states=list(residuals)).sample
        loss = (out - 1.0).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return controlnet.eval()


def test_from_transformer_copies_the_base_and_starts_as_a_no_op():
    base = base_model()
    controlnet = DeepDubberControlNetModel.from_transformer(base, num_layers=2, video_dim=DV, condition_dim=DC)
    assert controlnet.config.num_layers == 2 and controlnet.config.text_embed_dim == base.config.text_embed_dim
    for part in ("transformer_blocks", "text_embed", "input_embed", "time_embed"):
        base_weights = getattr(base, part).state_dict()
        for name, tensor in getattr(controlnet, part).state_dict().items():
            assert torch.equal(tensor, base_weights[name]), (part, name)
    with torch.no_grad():
        residuals = controlnet(**inputs(), **conditions()).controlnet_block_samples
        plain = base(**inputs()).sample
        steered = base(**inputs(), block_controlnet_hidden_states=list(residuals)).sample
    assert len(residuals) == 2 and all(float(r.abs().max()) == 0.0 for r in residuals)
    assert torch.equal(plain, steered)
    with pytest.raises(ValueError, match="num_layers"):
        DeepDubberControlNetModel.from_transformer(base, num_layers=5)


def test_trained_residuals_follow_the_video_and_the_conclusion_unless_dropped():
    controlnet = trained_controlnet(base_model())
    x, c = inputs(), conditions()
    other_video = {**c, "video_features": torch.randn(2, N, DV)}
    other_conclusion = {**c, "condition_embeds": torch.randn(2, 5, DC)}
    with torch.no_grad():
        out = controlnet(**x, **c).controlnet_block_samples[-1]
        assert float(out.abs().max()) > 0
        assert not torch.allclose(out, controlnet(**x, **other_video).controlnet_block_samples[-1])
        assert not torch.allclose(out, controlnet(**x, **other_conclusion).controlnet_block_samples[-1])
        # Dropped for the first sample only: it no longer sees the condition; the second still does.
        drop = torch.tensor([True, False])
        for changed, flag in ((other_video, "drop_video"), (other_conclusion, "drop_conclusion")):
            a = controlnet(**x, **c, **{flag: drop}).controlnet_block_samples[-1]
            b = controlnet(**x, **changed, **{flag: drop}).controlnet_block_samples[-1]
            assert torch.allclose(a[0], b[0], atol=1e-6)
            assert not torch.allclose(a[1], b[1])
        # A conclusion whose tokens are all masked gives numbers, not NaN.
        masked = controlnet(**x, **{**c, "condition_mask": torch.zeros(2, 5, dtype=torch.bool)})
        assert torch.isfinite(masked.controlnet_block_samples[-1]).all()


def test_save_and_load_round_trip(tmp_path):
    controlnet = trained_controlnet(base_model(), steps=1)
    controlnet.save_pretrained(tmp_path / "controlnet")
    loaded = DeepDubberControlNetModel.from_pretrained(tmp_path / "controlnet").eval()
    with torch.no_grad():
        a = controlnet(**inputs(), **conditions()).controlnet_block_samples
        b = loaded(**inputs(), **conditions()).controlnet_block_samples
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_video_features_must_be_at_the_mel_rate():
    controlnet = DeepDubberControlNetModel.from_transformer(base_model(), num_layers=1, video_dim=DV, condition_dim=DC)
    with pytest.raises(ValueError, match="one row per mel frame"):
        controlnet(**inputs(), video_features=torch.randn(2, N // 4, DV))
