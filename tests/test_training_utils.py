"""Helpers shared by the training scripts."""

import torch
from transformers import AutoConfig, AutoModel

from deepdubber_hf.reasoner.configuration_reasoner import TINY_RESNET_VISION_CONFIG
from deepdubber_hf.training_utils import freeze_module


def test_a_frozen_tower_keeps_its_batch_norm_statistics_through_train_mode():
    torch.manual_seed(0)
    tower = AutoModel.from_config(AutoConfig.for_model("resnet", **TINY_RESNET_VISION_CONFIG))
    parent = torch.nn.ModuleDict({"tower": tower, "head": torch.nn.Linear(4, 4)})
    before = {name: value.clone() for name, value in tower.state_dict().items()}
    freeze_module(tower)
    parent.train()  # what a trainer does before each step
    assert parent["head"].training and not tower.training
    assert not any(module.training for module in tower.modules())
    tower(pixel_values=torch.randn(2, 3, 128, 128) * 3 + 1)
    assert all(torch.equal(before[name], value) for name, value in tower.state_dict().items())
    assert not any(parameter.requires_grad for parameter in tower.parameters())

    unfrozen = AutoModel.from_config(AutoConfig.for_model("resnet", **TINY_RESNET_VISION_CONFIG)).train()
    running = unfrozen.embedder.embedder.normalization.running_mean.clone()
    unfrozen(pixel_values=torch.randn(2, 3, 128, 128) * 3 + 1)
    assert not torch.equal(running, unfrozen.embedder.embedder.normalization.running_mean)  # what freezing prevents


def test_rebuild_with_weights_copies_diffusers_and_transformers_models():
    import pytest

    from deepdubber_hf.models.transformer_dit import DiTTransformerModel
    from deepdubber_hf.reasoner import DeepDubberReasonerConfig, DeepDubberReasonerForConditionalGeneration
    from deepdubber_hf.training_utils import rebuild_with_weights

    def build(seed):
        torch.manual_seed(seed)
        return [
            DiTTransformerModel(num_layers=1, num_attention_heads=2, attention_head_dim=8, vocab_size=16,
                                text_embed_dim=16, num_text_conv_layers=1),
            DeepDubberReasonerForConditionalGeneration(DeepDubberReasonerConfig.tiny(vocab_size=64)),
        ]  # fmt: skip

    for model, other in zip(build(0), build(1), strict=True):
        state = other.state_dict()  # other weights (tied ones stay tied)
        assert not all(torch.equal(model.state_dict()[name], value) for name, value in state.items())
        copy = rebuild_with_weights(model, state)
        assert type(copy) is type(model) and copy is not model
        assert all(torch.equal(copy.state_dict()[name], value) for name, value in state.items())
        with pytest.raises(RuntimeError, match="Missing key"):  # a partial state is refused, not half loaded
            rebuild_with_weights(model, dict(list(state.items())[1:]))
    with pytest.raises(TypeError, match="configuration"):
        rebuild_with_weights(torch.nn.Linear(2, 2), {})


def test_fsdp_shards_gather_into_the_ema_folder_and_the_whole_model(tmp_path):
    """FSDP 2 on two CPU processes (gloo): what train_tts.py and `whole_models` do with sharded weights."""
    import json
    import os
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(__file__), "distributed", "fsdp_ema.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script,
               str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(tmp_path / "result.json") as handle:
        found = json.load(handle)
    assert found == {"sharded": True, "ema_matches": True, "round_trip": True, "weights_match": True,
                     "optimization_step": 3}  # fmt: skip
