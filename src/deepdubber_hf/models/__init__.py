from .transformer_dit import DiTTransformerModel, DiTTransformerOutput
from .vocoder import VocosVocoder


__all__ = ["DiTTransformerModel", "DiTTransformerOutput", "VocosVocoder"]
