from .controlnet_dit import DeepDubberControlNetModel, DeepDubberControlNetOutput
from .duration_predictor import DurationPredictorModel, DurationPredictorOutput
from .transformer_dit import DiTTransformerModel, DiTTransformerOutput
from .vocoder import GriffinLimVocoder, VocosVocoder


__all__ = [
    "DeepDubberControlNetModel",
    "DeepDubberControlNetOutput",
    "DiTTransformerModel",
    "DiTTransformerOutput",
    "DurationPredictorModel",
    "DurationPredictorOutput",
    "GriffinLimVocoder",
    "VocosVocoder",
]
