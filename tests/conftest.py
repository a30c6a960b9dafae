"""Fixtures shared across test folders."""

import pytest


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """One generated level-1 clip written as an mp4: (path, its corpus row with the annotation)."""
    from deepdubber_hf.data.corpus import generate_clip

    row = generate_clip("l1-test", level=1, seed=3)
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    path.write_bytes(row["video"]["bytes"])
    return str(path), row


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A procedural corpus of 6 level-1 clips (5 train, 1 test) and 4 level-2 clips, in the Hub layout."""
    from deepdubber_hf.data.corpus import generate_corpus

    folder = tmp_path_factory.mktemp("tiny_corpus")
    generate_corpus(str(folder), level=1, num_clips=6, seed=11, workers=1, shard_size=6, progress=False)
    generate_corpus(str(folder), level=2, num_clips=4, seed=12, workers=1, shard_size=4, progress=False)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_reasoner(tiny_corpus, tmp_path_factory):
    """A tiny reasoner after one SFT step of examples/train_sft.py on `tiny_corpus` (2 frames per clip)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = str(tmp_path_factory.mktemp("tiny_reasoner"))
    command = [sys.executable, os.path.join(root, "examples", "train_sft.py"), "--dataset", tiny_corpus,
               "--dataset_config_name", "level1", "level2", "--output_dir", out, "--num_frames", "2",
               "--train_batch_size", "2", "--max_train_steps", "1", "--lr_warmup_steps", "0",
               "--tokenizer_vocab_size", "400", "--dataloader_num_workers", "0", "--report_to", "none"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def tiny_tts_model(tiny_corpus, tmp_path_factory):
    """A stage 2.1 output folder for examples/train_controlnet.py: a seeded tiny DiT, the tokenizer of
    `tiny_corpus`'s scripts, a tiny vocoder."""
    import datasets
    import torch

    from deepdubber_hf import DeepDubberTokenizer, DiTTransformerModel, VocosVocoder

    root = tmp_path_factory.mktemp("tiny_tts_model")
    texts = []
    for name in ("level1", "level2"):
        for split in ("train", "test"):
            rows = datasets.load_dataset(tiny_corpus, name, split=split)
            texts += list(rows["transcript"]) + list(rows["reference_text"])
    tokenizer = DeepDubberTokenizer.from_texts(texts, root / "tokenizer")
    torch.manual_seed(0)
    transformer = DiTTransformerModel(num_layers=2, num_attention_heads=2, attention_head_dim=16,
                                      vocab_size=tokenizer.vocab_size, text_embed_dim=16, num_text_conv_layers=1)
    # A fresh DiT's output layers are zero (AdaLN-zero) and would pass no gradient back to a ControlNet.
    for layer in (transformer.proj_out, transformer.norm_out.linear):
        torch.nn.init.normal_(layer.weight, std=0.05)
    transformer.save_pretrained(root / "transformer")
    VocosVocoder(hidden_size=32, intermediate_size=64, num_layers=1).save_pretrained(root / "vocoder")
    return root
