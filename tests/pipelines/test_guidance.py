import torch

from deepdubber_hf import DeepDubberControlNetModel, DiTTransformerModel
from deepdubber_hf.pipelines.guidance import branch_drop_flags, combine_branches, stack_branches


def test_combination_is_eq_20():
    v = torch.arange(4 * 2 * 3, dtype=torch.float).reshape(8, 3) ** 1.5  # (4 branches × 2 samples, 3)
    full, no_video, text_only, none = v[0:2], v[2:4], v[4:6], v[6:8]
    expected = none + 2.0 * (full - no_video) + 3.0 * (no_video - text_only) + 0.5 * (text_only - none)
    assert torch.allclose(combine_branches(v, 2.0, 3.0, 0.5), expected)
    assert torch.allclose(combine_branches(v, 1.0, 1.0, 1.0), full)  # all scales 1: the conditioned velocity


def test_one_batched_forward_equals_four_separate_ones():
    torch.manual_seed(0)
    base = DiTTransformerModel(num_layers=2, num_attention_heads=2, attention_head_dim=8, vocab_size=16,
                               text_embed_dim=8, num_text_conv_layers=1, dropout=0.0)  # fmt: skip
    controlnet = DeepDubberControlNetModel.from_transformer(base, num_layers=1, video_dim=4, condition_dim=6)
    with torch.no_grad():
        for p in list(base.parameters()) + list(controlnet.parameters()):
            p.add_(torch.randn_like(p) * 0.1)  # every zero-initialised layer made to matter
    base.eval(), controlnet.eval()
    b, n = 2, 24
    x = {"hidden_states": torch.randn(b, n, 100), "cond": torch.randn(b, n, 100), "timestep": torch.full((b,), 0.3),
         "text_ids": torch.randint(0, 16, (b, 5))}  # fmt: skip
    c = {"video_features": torch.randn(b, n, 4), "condition_embeds": torch.randn(b, 3, 6)}

    def velocity(inputs, conditions, flags):
        control_flags = {k: flags[k] for k in ("drop_video", "drop_conclusion", "drop_text", "drop_audio_cond")}
        residuals = controlnet(**inputs, **conditions, **control_flags).controlnet_block_samples
        return base(**inputs, drop_text=flags["drop_text"], drop_audio_cond=flags["drop_audio_cond"],
                    block_controlnet_hidden_states=list(residuals)).sample  # fmt: skip

    with torch.no_grad():
        flags = branch_drop_flags(b)
        batched = velocity({k: stack_branches(v) for k, v in x.items()}, {k: stack_branches(v) for k, v in c.items()},
                           flags)  # fmt: skip
        separate = torch.cat([
            velocity(x, c, {k: bool(v[branch * b]) for k, v in flags.items()}) for branch in range(4)
        ])  # fmt: skip
    assert torch.allclose(batched, separate, atol=1e-5)
    assert not torch.allclose(batched[:b], batched[b : 2 * b])  # the branches differ
    assert combine_branches(batched, 2.0, 1.5, 2.0).shape == (b, n, 100)
