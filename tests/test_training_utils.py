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
