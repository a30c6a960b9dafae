"""Run by `tests/test_training_utils.py` under `torchrun --nproc_per_node 2` (gloo, CPU): a tiny DiT split by FSDP 2's
`fully_shard`, an EMA of its shards, the EMA gathered and written as `train_tts.py` writes it, read back into the
shards, and the whole weights gathered into a model rebuilt from its configuration. Each step is compared with the
same on an unsplit copy; the main process writes `OUT/result.json`."""

import json
import os
import sys

import torch
import torch.distributed as dist
from diffusers.training_utils import EMAModel
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))

from train_tts import save_averaged  # noqa: E402

from deepdubber_hf.models.transformer_dit import DiTTransformerModel  # noqa: E402
from deepdubber_hf.training_utils import full_tensors, rebuild_with_weights, shard_like  # noqa: E402


def main(out: str):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    model = DiTTransformerModel(num_layers=2, num_attention_heads=2, attention_head_dim=8, vocab_size=16,
                                text_embed_dim=16, num_text_conv_layers=1)  # fmt: skip
    reference = DiTTransformerModel.from_config(model.config)
    reference.load_state_dict(model.state_dict())
    for block in model.transformer_blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    sharded = any(p.to_local().numel() < p.numel() for p in model.parameters())

    def settings():
        return dict(decay=0.9, update_after_step=0, model_cls=DiTTransformerModel, model_config=model.config)

    ema, ema_reference = EMAModel(model.parameters(), **settings()), EMAModel(reference.parameters(), **settings())
    for step in range(3):  # the same updates on both: the weights move, then each EMA steps
        with torch.no_grad():
            for p, q in zip(model.parameters(), reference.parameters(), strict=True):
                update = torch.full(q.shape, 0.1 * (step + 1)) * torch.arange(q.numel()).reshape(q.shape).sin()
                p.add_(shard_like([update], [p])[0])
                q.add_(update)
        ema.step(model.parameters())
        ema_reference.step(reference.parameters())

    averaged = full_tensors(ema.shadow_params)  # a collective: every process
    ema_matches = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(averaged, ema_reference.shadow_params, strict=True))
    folder = os.path.join(out, "transformer_ema")
    if rank == 0:
        save_averaged(ema, averaged, folder)
    dist.barrier()
    loaded = DiTTransformerModel.from_pretrained(folder)
    reloaded = shard_like([p.detach() for p in loaded.parameters()], list(model.parameters()))
    round_trip = all(torch.equal(a.to_local(), b.to_local()) for a, b in zip(reloaded, ema.shadow_params, strict=True))

    ema.copy_to(model.parameters())  # what train_tts.py does on every process before the final save
    ema_reference.copy_to(reference.parameters())
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        whole = rebuild_with_weights(model, state)
        weights_match = all(torch.allclose(whole.state_dict()[k], v, atol=1e-6) for k, v in reference.state_dict().items())
        with open(os.path.join(out, "result.json"), "w") as handle:
            json.dump({"sharded": sharded, "ema_matches": ema_matches, "round_trip": round_trip,
                       "weights_match": weights_match, "optimization_step": loaded.config.optimization_step}, handle)  # fmt: skip
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
