"""Models: keyframe U-Net, interpolation U-Net, MoVQ Video and text conditioning."""

from .movq_video import MoVQVideo
from .text_encoder import KandinskyTextEncoder, TextConditioning, TextProjection
from .unet_interpolation import KandinskyVideoInterpolationUNet
from .unet_keyframe import KandinskyVideoUNet

__all__ = [
    "KandinskyTextEncoder",
    "KandinskyVideoInterpolationUNet",
    "KandinskyVideoUNet",
    "MoVQVideo",
    "TextConditioning",
    "TextProjection",
]
