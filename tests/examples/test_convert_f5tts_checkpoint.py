"""scripts/convert_f5tts_checkpoint.py on a checkpoint written by the f5-tts package's own trainer."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from deepdubber_hf import DeepDubberPipeline

ROOT = Path(__file__).resolve().parents[2]
ARCH = dict(dim=64, depth=2, heads=4, dim_head=16, ff_mult=2, text_dim=32, conv_layers=1, text_mask_padding=True)
VOCAB = [" ", *sorted(set("where did you put the map? I left it on the table. go") - {" "})]


@pytest.fixture(scope="module")
def f5_checkpoint(tmp_path_factory):
    """model_last.pt from f5-tts's Trainer.save_checkpoint, with random (non-zero) weights, plus vocab.txt."""
    f5_model = pytest.importorskip("f5_tts.model")
    folder = tmp_path_factory.mktemp("f5")
    (folder / "vocab.txt").write_text("".join(token + "\n" for token in VOCAB), encoding="utf-8")
    torch.manual_seed(0)
    dit = f5_model.DiT(**ARCH, text_num_embeds=len(VOCAB), mel_dim=100)
    with torch.no_grad():
        for param in dit.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    cfm = f5_model.CFM(transformer=dit, vocab_char_map={c: i for i, c in enumerate(VOCAB)})
    trainer = f5_model.Trainer(cfm, epochs=1, learning_rate=1e-4, logger=None, checkpoint_path=str(folder / "ckpts"))
    trainer.scheduler = torch.optim.lr_scheduler.LinearLR(trainer.optimizer)
    trainer.save_checkpoint(7, last=True)
    yaml_path = folder / "tiny.yaml"
    yaml_path.write_text(yaml.safe_dump({"model": {"arch": ARCH}}))
    return folder / "ckpts" / "model_last.pt", folder / "vocab.txt", yaml_path, cfm


@pytest.fixture(scope="module")
def vocos_dir(tmp_path_factory):
    vocos = pytest.importorskip("vocos")
    folder = tmp_path_factory.mktemp("vocos")
    config = {
        "feature_extractor": {"class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
                              "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100,
                                            "padding": "center"}},
        "backbone": {"class_path": "vocos.models.VocosBackbone",
                     "init_args": {"input_channels": 100, "dim": 32, "intermediate_dim": 64, "num_layers": 1}},
        "head": {"class_path": "vocos.heads.ISTFTHead",
                 "init_args": {"dim": 32, "n_fft": 1024, "hop_length": 256, "padding": "center"}},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(1)
    model = vocos.Vocos.from_hparams(str(folder / "config.yaml"))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def run_converter(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_f5tts_checkpoint.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_converted_pipeline_matches_f5tts(f5_checkpoint, vocos_dir, tmp_path):
    checkpoint, vocab, yaml_path, cfm = f5_checkpoint
    result = run_converter("--checkpoint", checkpoint, "--vocab", vocab, "--model_config", yaml_path,
                           "--vocos_dir", vocos_dir, "--output_dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    pipe = DeepDubberPipeline.from_pretrained(tmp_path / "out")
    assert pipe.tokenizer.vocab_size == len(VOCAB)

    # The EMA weights were saved; EMA of a never-updated model equals the model itself.
    ema = cfm.transformer.eval()
    x = torch.randn(1, 40, 100)
    cond = torch.zeros(1, 40, 100)
    text = pipe.tokenizer.text_to_ids(["where did the map go?"])
    t = torch.tensor([0.3])
    with torch.no_grad():
        expected = ema(x, cond, text, t)
        got = pipe.transformer(x, cond, t, text_ids=text).sample
    assert (got - expected).abs().max().item() < 1e-5
    out = pipe("where did the map go?", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.audios[0].ndim == 1 and out.audios[0].shape[0] > 0


def test_wrong_vocab_is_a_clear_error(f5_checkpoint, vocos_dir, tmp_path):
    checkpoint, _, yaml_path, _ = f5_checkpoint
    short_vocab = tmp_path / "vocab.txt"
    short_vocab.write_text(" \na\nb\n", encoding="utf-8")
    result = run_converter("--checkpoint", checkpoint, "--vocab", short_vocab, "--model_config", yaml_path,
                           "--vocos_dir", vocos_dir, "--output_dir", tmp_path / "out")
    assert result.returncode != 0
    assert "vocab.txt the checkpoint was trained with" in result.stderr
    assert not (tmp_path / "out").exists()
