"""F5-TTS checkpoints → :class:`~deepdubber_hf.DiTTransformerModel` (config and weights).

This is the one place where F5-TTS's own names (``dim``, ``depth``, ``heads``, ``text_blocks`` …) appear.
``scripts/convert_f5tts_checkpoint.py`` drives it from the command line.
"""

from __future__ import annotations

import os
import re
from typing import Optional

import torch

# F5-TTS key pattern → ours. Applied in order to every key of the DiT's state dict.
_KEY_RULES = [
    (r"^time_embed\.time_mlp\.0\.", "time_embed.linear_1."),
    (r"^time_embed\.time_mlp\.2\.", "time_embed.linear_2."),
    (r"^text_embed\.text_embed\.", "text_embed.token_embedding."),
    (r"^text_embed\.text_blocks\.", "text_embed.conv_blocks."),
    (r"^input_embed\.conv_pos_embed\.conv1d\.0\.", "input_embed.conv_pos_embed.conv1."),
    (r"^input_embed\.conv_pos_embed\.conv1d\.2\.", "input_embed.conv_pos_embed.conv2."),
    (r"\.attn_norm\.linear\.", ".norm1.linear."),
    (r"\.attn\.to_out\.0\.", ".attn.to_out."),
    (r"\.attn\.q_norm\.", ".attn.norm_q."),
    (r"\.attn\.k_norm\.", ".attn.norm_k."),
    (r"\.ff\.ff\.0\.0\.", ".ff.proj_in."),
    (r"\.ff\.ff\.2\.", ".ff.proj_out."),
]
# The `model.arch` blocks of F5-TTS's released configs (f5_tts/configs/*.yaml), so that conversion does not need
# the f5-tts package installed.
F5TTS_ARCHS = {
    "F5TTS_v1_Base": dict(dim=1024, depth=22, heads=16, ff_mult=2, text_dim=512, text_mask_padding=True,
                          conv_layers=4, pe_attn_head=None),
    "F5TTS_v1_Small": dict(dim=768, depth=18, heads=12, ff_mult=2, text_dim=512, text_mask_padding=True,
                           conv_layers=4, pe_attn_head=None),
    "F5TTS_Base": dict(dim=1024, depth=22, heads=16, ff_mult=2, text_dim=512, text_mask_padding=False,
                       conv_layers=4, pe_attn_head=1),
    "F5TTS_Small": dict(dim=768, depth=18, heads=12, ff_mult=2, text_dim=512, text_mask_padding=False,
                        conv_layers=4, pe_attn_head=1),
}

# Buffers F5-TTS saves that we recompute.
_DROPPED = re.compile(r"^(rotary_embed\.inv_freq|text_embed\.freqs_cis)$")


def f5tts_config_to_dit_config(arch: dict, vocab_size: int, mel_dim: int = 100) -> dict:
    """Map an F5-TTS ``model.arch`` block (e.g. from ``F5TTS_v1_Base.yaml``) to ``DiTTransformerModel`` kwargs.

    Raises:
        ValueError: for F5-TTS options this model does not implement (the long skip connection); converting
            them would silently change the outputs.
    """
    if arch.get("long_skip_connection"):
        raise ValueError("F5-TTS `long_skip_connection=True` (E2-style) is not supported by DiTTransformerModel.")
    dim, heads = int(arch["dim"]), int(arch.get("heads", 8))
    head_dim = int(arch.get("dim_head", 64))
    if heads * head_dim != dim:
        raise ValueError(f"F5-TTS dim ({dim}) must equal heads ({heads}) × dim_head ({head_dim}) to convert.")
    return dict(
        in_channels=int(arch.get("mel_dim", mel_dim)),
        num_layers=int(arch.get("depth", 8)),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        mlp_ratio=float(arch.get("ff_mult", 4)),
        vocab_size=int(vocab_size),
        text_embed_dim=int(arch.get("text_dim") or arch.get("mel_dim", mel_dim)),
        num_text_conv_layers=int(arch.get("conv_layers", 0)),
        text_mask_padding=bool(arch.get("text_mask_padding", True)),
        text_upsampling="average" if arch.get("text_embedding_average_upsampling") else "pad",
        qk_norm=arch.get("qk_norm"),
        dropout=float(arch.get("dropout", 0.1)),
        attention_mask_keys=bool(arch.get("attn_mask_enabled", False)),
        rotary_heads=arch.get("pe_attn_head"),
    )


def convert_f5tts_state_dict(state_dict: dict) -> dict:
    """Rename the keys of an F5-TTS ``DiT`` state dict (without the ``transformer.`` prefix) to ours."""
    converted = {}
    for key, value in state_dict.items():
        if _DROPPED.match(key):
            continue
        new_key = key
        for pattern, replacement in _KEY_RULES:
            new_key = re.sub(pattern, replacement, new_key)
        converted[new_key] = value
    return converted


def load_f5tts_checkpoint(path: str, use_ema: bool = True) -> dict:
    """Read the DiT weights out of an F5-TTS checkpoint (``.pt`` written by its trainer, or ``.safetensors``).

    F5-TTS's trainer saves ``{"model_state_dict", "ema_model_state_dict", ...}`` with keys ``transformer.*``
    and ``ema_model.transformer.*``; its released ``.safetensors`` hold the EMA weights alone. Returns the DiT
    state dict with F5-TTS names (feed it to :func:`convert_f5tts_state_dict`).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"F5-TTS checkpoint {path!r} does not exist.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        checkpoint = {"ema_model_state_dict": load_file(path)}
    else:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if use_ema and "ema_model_state_dict" in checkpoint:
        weights, prefix = checkpoint["ema_model_state_dict"], "ema_model.transformer."
    elif "model_state_dict" in checkpoint:
        weights, prefix = checkpoint["model_state_dict"], "transformer."
    elif "ema_model_state_dict" in checkpoint:
        weights, prefix = checkpoint["ema_model_state_dict"], "ema_model.transformer."
    else:
        raise ValueError(
            f"{path!r} is not an F5-TTS checkpoint: expected the keys 'ema_model_state_dict' or 'model_state_dict'."
        )
    dit = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    if not dit:
        raise ValueError(f"{path!r} holds no `{prefix}*` weights: is it an F5-TTS DiT checkpoint?")
    return dit


def read_f5tts_arch(name_or_path: str) -> dict:
    """An F5-TTS arch by config name (``F5TTS_v1_Base`` …) or from an F5-TTS YAML config file (``model.arch``)."""
    if name_or_path in F5TTS_ARCHS:
        return dict(F5TTS_ARCHS[name_or_path])
    if not os.path.isfile(name_or_path):
        raise ValueError(
            f"unknown F5-TTS config {name_or_path!r}: give one of {sorted(F5TTS_ARCHS)} or the path of its YAML file."
        )
    import yaml

    with open(name_or_path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    try:
        return dict(config["model"]["arch"])
    except (KeyError, TypeError):
        raise ValueError(f"{name_or_path!r} has no `model.arch` block: is it an F5-TTS training config?") from None


def read_f5tts_vocab(path: str) -> list:
    """F5-TTS ``vocab.txt``: one token a line, the line number is the id."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"vocab file {path!r} does not exist.")
    with open(path, encoding="utf-8") as handle:
        return [line[:-1] if line.endswith("\n") else line for line in handle]


def dit_from_f5tts(arch: dict, state_dict: dict, vocab_size: Optional[int] = None):
    """Build a :class:`~deepdubber_hf.DiTTransformerModel` from an F5-TTS arch dict and DiT state dict."""
    from .transformer_dit import DiTTransformerModel

    if vocab_size is None:
        vocab_size = state_dict["text_embed.text_embed.weight"].shape[0] - 1
    model = DiTTransformerModel(**f5tts_config_to_dit_config(arch, vocab_size))
    model.load_state_dict(convert_f5tts_state_dict(state_dict), strict=True)
    return model.eval()


__all__ = [
    "F5TTS_ARCHS",
    "read_f5tts_arch",
    "convert_f5tts_state_dict",
    "dit_from_f5tts",
    "f5tts_config_to_dit_config",
    "load_f5tts_checkpoint",
    "read_f5tts_vocab",
]
