"""The animation loop: frame 0 by text-to-image, then warp the latest frame by the camera step and repair it with
image-to-image, streaming every frame to a writer as soon as it exists.

The image model enters only through two callables, so any text-to-image / image-to-image pair plugs in:

    text_to_image(prompt: str, seed: int) -> (H, W, 3) float32 in [0, 1]
    image_to_image(image: (H, W, 3) in [0, 1], prompt: str, denoise_strength: float, seed: int) -> (H, W, 3)

``denoise_strength`` is the diffusers denoising strength: the fraction of the noise schedule that is re-run
(0 = return the image unchanged, 1 = draw from pure noise). The original Deforum's ``strength`` is the fraction kept.

Cadence N: only frames 0, N, 2N, ... are diffused. Frame k + j (j = 0 .. N - 1 after diffused frame k) shows
(1 - w) * previous chain + w * new chain with w = (j + 1) / N, where the new chain is the sample of frame k and the
previous chain the sample before it, both warped frame by frame up to k + j. Only those two chains (and frame 0's
colour histograms) are kept, whatever the length.
"""

import itertools
import logging
from collections.abc import Callable, Iterator

import numpy as np
from tqdm.auto import tqdm

from .color import ColorMatcher
from .depth import ConstantDepth
from .filters import unsharp_mask
from .spec import AnimationSpec
from .warp import motion_matrix_2d, warp_2d, warp_3d

logger = logging.getLogger(__name__)

TextToImage = Callable[[str, int], np.ndarray]
ImageToImage = Callable[[np.ndarray, str, float, int], np.ndarray]
Depth = Callable[[np.ndarray], np.ndarray]


def render_animation(spec: AnimationSpec, text_to_image: TextToImage, image_to_image: ImageToImage,
                     writer: Callable[[np.ndarray], object] | object | None = None, depth: Depth | None = None,
                     progress: bool = True) -> int:
    """Render ``spec`` and hand each (H, W, 3) float32 frame to ``writer`` as it is made; returns the frame count.

    ``writer`` is a callable or an object with ``write(frame)`` (e.g. ``Mp4Writer``); None drops the frames (for
    timing). ``depth`` maps an image to its (H, W) depth for the 3D warp (default ``ConstantDepth()``).
    """
    emit = _emitter(writer)
    depth = depth or ConstantDepth()
    schedules = spec.schedules()
    seeds = _seeds(spec)
    cadence = spec.cadence
    logger.info("%d frames of %dx%d, %s mode, img2img on %d of them (cadence %d)", spec.num_frames, spec.width,
                spec.height, spec.animation_mode, len(range(cadence, spec.num_frames, cadence)), cadence)
    with tqdm(total=spec.num_frames, unit="frame", disable=not progress, desc="animation") as bar:
        first = _checked(text_to_image(spec.prompt_at(0), next(seeds)), spec, "text_to_image")
        match_colors = None if spec.color_coherence == "none" else ColorMatcher(first, spec.color_coherence)
        previous, latest = None, first  # the two cadence chains, each warped up to the current frame
        for frame in range(spec.num_frames):
            weight = (frame % cadence + 1) / cadence
            if frame > 0:
                depth_map = depth(latest) if spec.animation_mode == "3D" else None
                warped = _warp(latest, spec, schedules, frame, depth_map)
                if frame % cadence == 0:
                    seed = next(seeds)
                    init = _repair(warped, match_colors, spec, schedules, frame, seed)
                    sample = image_to_image(init, spec.prompt_at(frame), float(schedules["denoise_strength"][frame]),
                                            seed)
                    previous, latest = warped, _checked(sample, spec, "image_to_image")
                else:
                    latest = warped
                    # The previous chain is needed only while it still shows (weight < 1).
                    if previous is not None and weight < 1:
                        previous = _warp(previous, spec, schedules, frame, depth_map)
                    else:
                        previous = None
            emit(latest if previous is None or weight >= 1 else (1 - weight) * previous + weight * latest)
            bar.update()
    return spec.num_frames


def _warp(image: np.ndarray, spec: AnimationSpec, schedules: dict[str, np.ndarray], frame: int,
          depth_map: np.ndarray | None) -> np.ndarray:
    """Move ``image`` by the camera step of ``frame``."""
    value = {name: float(series[frame]) for name, series in schedules.items()}
    if spec.animation_mode == "2D":
        perspective = None
        if spec.perspective_flip:
            perspective = tuple(value[f"perspective_flip_{name}"] for name in ("theta", "phi", "gamma", "fov"))
        matrix = motion_matrix_2d(spec.width, spec.height, value["angle"], value["zoom"], value["translation_x"],
                                  value["translation_y"], perspective)
        return warp_2d(image, matrix, spec.border, spec.sampling)
    translation = (value["translation_x"], value["translation_y"], value["translation_z"])
    rotation = (value["rotation_3d_x"], value["rotation_3d_y"], value["rotation_3d_z"])
    return warp_3d(image, depth_map, translation, rotation, value["fov"], spec.sampling)


def _repair(warped: np.ndarray, match_colors: ColorMatcher | None, spec: AnimationSpec,
            schedules: dict[str, np.ndarray], frame: int, seed: int) -> np.ndarray:
    """The reference's steps between the warp and img2img: colour coherence, contrast, unsharp mask, noise."""
    image = warped
    if match_colors is not None:
        image = match_colors(image)  # to frame 0
    image = image * float(schedules["contrast"][frame])  # a Python float keeps float32 arrays float32
    image = unsharp_mask(image, spec.unsharp_kernel, spec.unsharp_sigma, spec.unsharp_amount, spec.unsharp_threshold)
    noise = float(schedules["noise"][frame])
    if noise > 0:
        # The original adds randn * noise in [-1, 1] pixel space: half that in [0, 1].
        image = image + np.random.default_rng(seed).standard_normal(image.shape, dtype=np.float32) * (noise / 2)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _seeds(spec: AnimationSpec) -> Iterator[int]:
    """The seed of each diffused frame in turn (frame 0 gets spec.seed in every behaviour)."""
    if spec.seed_behavior == "iter":
        return itertools.count(spec.seed)
    if spec.seed_behavior == "fixed":
        return itertools.repeat(spec.seed)
    generator = np.random.default_rng(spec.seed)  # "random", yet the same video for the same spec
    return itertools.chain([spec.seed], (int(generator.integers(2**32)) for _ in itertools.count()))


def _checked(image: np.ndarray, spec: AnimationSpec, source: str) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.shape != (spec.height, spec.width, 3):
        raise ValueError(f"{source} returned shape {image.shape}; the spec asks for (height, width, 3) = "
                         f"{(spec.height, spec.width, 3)} floats in [0, 1]: make the model produce the spec's size")
    return image


def _emitter(writer) -> Callable[[np.ndarray], object]:
    if writer is None:
        return lambda frame: None
    if hasattr(writer, "write"):
        return writer.write
    if callable(writer):
        return writer
    raise ValueError(f"writer must be a callable or have a write(frame) method, got {type(writer).__name__}")
