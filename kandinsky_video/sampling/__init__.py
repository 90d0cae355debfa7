"""Samplers: the exact port of the released sampler; diffusers' schedulers plug into the same pipeline."""

from .released import KandinskyVideoScheduler, cosine_betas, dynamic_threshold

__all__ = ["KandinskyVideoScheduler", "cosine_betas", "dynamic_threshold"]
