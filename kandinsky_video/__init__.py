"""Kandinsky Video: text-to-video on the frozen Kandinsky 3.0 U-Net."""

from .models import (
    KandinskyTextEncoder,
    KandinskyVideoInterpolationUNet,
    KandinskyVideoUNet,
    MoVQVideo,
    TextConditioning,
    TextProjection,
)
from .pipelines import KandinskyVideoPipeline, write_video
from .sampling import KandinskyVideoScheduler

__version__ = "0.1.0"
__all__ = [
    "KandinskyTextEncoder",
    "KandinskyVideoInterpolationUNet",
    "KandinskyVideoPipeline",
    "KandinskyVideoScheduler",
    "KandinskyVideoUNet",
    "MoVQVideo",
    "TextConditioning",
    "TextProjection",
    "write_video",
]
