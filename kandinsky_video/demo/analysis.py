"""Reading a demo-world video back: background, object colour and shape, centroid track, motion, smoothness.

Used to score generated demo videos against their prompts; its own accuracy on rendered world videos is reported
beside every score (it should be near 100%).
"""

from dataclasses import dataclass

import numpy as np

from .world import BACKGROUNDS, COLOURS, MOTIONS, Scene


@dataclass
class Reading:
    background: str
    colour: str | None  # None: no object found
    shape: str | None
    motion: str | None
    track: np.ndarray  # (T, 2) centroid (x, y); NaN where no object
    areas: np.ndarray  # (T,) object area in pixels

    def matches(self, scene: Scene) -> dict[str, bool]:
        return {"colour": self.colour == scene.colour, "shape": self.shape == scene.shape,
                "motion": self.motion == scene.motion}


def nearest(value: np.ndarray, palette: dict[str, tuple]) -> str:
    return min(palette, key=lambda name: float(np.sum((np.asarray(palette[name]) - value) ** 2)))


def classify_shape(mask: np.ndarray) -> str | None:
    """Fill ratio of the bounding box: square ~1, circle ~pi/4, triangle ~1/2."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 6:
        return None
    fill = len(xs) / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    return "square" if fill > 0.88 else "circle" if fill > 0.64 else "triangle"


def classify_motion(track: np.ndarray, areas: np.ndarray) -> str | None:
    """The dominant change: size (growing / shrinking) or the larger centroid displacement."""
    valid = ~np.isnan(track[:, 0])
    if valid.sum() < 2:
        return None
    first, last = np.flatnonzero(valid)[[0, -1]]
    dx, dy = track[last] - track[first]
    growth = np.sqrt(areas[last] / max(areas[first], 1.0))  # radius ratio
    scale = np.sqrt(max(areas[first], areas[last]))
    if abs(np.log(growth)) > 0.4 and abs(np.log(growth)) * scale > max(abs(dx), abs(dy)) * 0.5:
        return "growing" if growth > 1 else "shrinking"
    if max(abs(dx), abs(dy)) < 2:
        return None
    if abs(dx) >= abs(dy):
        return "moving right" if dx > 0 else "moving left"
    return "moving down" if dy > 0 else "moving up"


def read_video(frames: np.ndarray) -> Reading:
    """frames: (T, H, W, 3) in [0, 1] (or uint8)."""
    frames = frames.astype(np.float32) / (255.0 if frames.dtype == np.uint8 else 1.0)
    border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
    background_value = np.median(border.reshape(-1, 3), axis=0)
    background = nearest(background_value, BACKGROUNDS)
    masks = np.linalg.norm(frames - background_value, axis=-1) > 0.25  # (T, H, W)
    areas = masks.sum(axis=(1, 2)).astype(np.float64)
    track = np.full((len(frames), 2), np.nan)
    for i, mask in enumerate(masks):
        if areas[i] >= 6:
            ys, xs = np.nonzero(mask)
            track[i] = xs.mean(), ys.mean()
    if not masks.any():
        return Reading(background, None, None, None, track, areas)
    colour = nearest(np.median(frames[masks], axis=0), COLOURS)
    middle = int(np.argmax(areas)) if areas.max() > 0 else 0
    shapes = [classify_shape(mask) for mask in masks[:: max(1, len(masks) // 8)]]
    shapes = [s for s in shapes if s] or [classify_shape(masks[middle])]
    shape = max(set(shapes), key=shapes.count) if shapes[0] else None
    return Reading(background, colour, shape, classify_motion(track, areas), track, areas)


def path_smoothness(track: np.ndarray) -> float:
    """Mean absolute second difference of the centroid path, in pixels per frame^2 (0 for constant velocity)."""
    valid = track[~np.isnan(track[:, 0])]
    if len(valid) < 3:
        return float("nan")
    return float(np.abs(np.diff(valid, n=2, axis=0)).sum(axis=1).mean())


__all__ = ["MOTIONS", "Reading", "path_smoothness", "read_video"]
