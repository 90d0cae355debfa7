"""Samplers: the exact port of the released sampler; diffusers' schedulers plug into the same pipeline."""

from .kandinsky3 import Kandinsky3Scheduler
from .released import KandinskyVideoScheduler, cosine_betas, dynamic_threshold

__all__ = ["Kandinsky3Scheduler", "KandinskyVideoScheduler", "cosine_betas", "dynamic_threshold"]
