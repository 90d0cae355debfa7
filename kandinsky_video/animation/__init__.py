"""Deforum-style camera-path animation ("Kandinsky Deforum"), independent of the image model.

    spec = AnimationSpec.from_yaml("configs/animation/flight_3d.yaml")
    with Mp4Writer("flight.mp4", fps=spec.fps) as writer:
        render_animation(spec, text_to_image, image_to_image, writer)

``text_to_image(prompt, seed)`` and ``image_to_image(image, prompt, denoise_strength, seed)`` are any callables
returning (H, W, 3) float32 in [0, 1]; denoise_strength is the diffusers strength (fraction of the schedule re-run).
"""

from .depth import ConstantDepth, TransformersDepth
from .render import render_animation
from .schedule import evaluate_schedule, parse_schedule
from .spec import MOTION_PRESETS, AnimationSpec
from .warp import motion_matrix_2d, warp_2d, warp_3d
from .writer import Mp4Writer

__all__ = [
    "MOTION_PRESETS",
    "AnimationSpec",
    "ConstantDepth",
    "Mp4Writer",
    "TransformersDepth",
    "evaluate_schedule",
    "motion_matrix_2d",
    "parse_schedule",
    "render_animation",
    "warp_2d",
    "warp_3d",
]
