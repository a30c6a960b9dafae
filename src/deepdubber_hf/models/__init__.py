from .controlnet_dit import DeepDubberControlNetModel, DeepDubberControlNetOutput
from .transformer_dit import DiTTransformerModel, DiTTransformerOutput
from .vocoder import VocosVocoder


__all__ = [
    "DeepDubberControlNetModel",
    "DeepDubberControlNetOutput",
    "DiTTransformerModel",
    "DiTTransformerOutput",
    "VocosVocoder",
]
