"""AnimationSpec: everything that defines one camera-path animation, loaded from YAML and validated up front.

Every motion value is a keyframe schedule string (``schedule.py``); a preset per prompt segment adds a camera move
that ramps linearly from ``preset * acceleration`` at the segment start down to 0 at its end, as the Kandinsky port
of Deforum does. Defaults are those of the reference table.
"""

import bisect
import dataclasses
import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..pipelines.limits import FPS, MAX_SEED, SEED, Range
from .schedule import evaluate_schedule, parse_schedule

# Camera moves per unit of acceleration (3D parameters: translations in world units, rotations in degrees).
MOTION_PRESETS: dict[str, dict[str, float]] = {
    "right": {"translation_x": 1.0},
    "left": {"translation_x": -1.0},
    "up": {"translation_y": 1.0},
    "down": {"translation_y": -1.0},
    "zoomin": {"translation_z": 1.0},
    "zoomout": {"translation_z": -1.0},
    "spin_clockwise": {"rotation_3d_z": 1.0},
    "spin_counterclockwise": {"rotation_3d_z": -1.0},
    "rotate_right": {"rotation_3d_y": 1.0},
    "rotate_left": {"rotation_3d_y": -1.0},
    "rotate_up": {"rotation_3d_x": 1.0},
    "rotate_down": {"rotation_3d_x": -1.0},
    "around_right": {"translation_x": 2.5, "rotation_3d_y": -0.5},
    "around_left": {"translation_x": -2.5, "rotation_3d_y": 0.5},
}
NO_PRESET = "none"

SECONDS = Range(0, 3600, low_open=True)  # per prompt
CADENCE = Range(1, 1000, integer=True)
MAX_FRAMES = 100_000  # over an hour at 24 fps; the schedules hold 16 floats per frame
FRAME_SIZE = Range(1, 4096, integer=True)  # any image model; Kandinsky's own need (multiples of 64) is the caller's
NUMBERS = {  # the plain numeric settings
    "fps": FPS, "width": FRAME_SIZE, "height": FRAME_SIZE, "seed": SEED, "cadence": CADENCE,
    "unsharp_kernel": Range(1, 99, integer=True), "unsharp_sigma": Range(0, 100, low_open=True),
    "unsharp_amount": Range(0, 100), "unsharp_threshold": Range(0, 255),
}


def _within(bound: float, unit: str) -> tuple:
    return (lambda v: np.abs(v) <= bound), f"within +-{bound:g} {unit} per frame"


# The schedule settings, and what each may be at any frame: moves per frame beyond these are no camera path (zoom
# 1e300 used to pass).
TURN, SHIFT = _within(360, "degrees"), _within(10_000, "pixels (2D) or world units (3D)")
SCHEDULE_RANGES = {
    "angle": TURN, "rotation_3d_x": TURN, "rotation_3d_y": TURN, "rotation_3d_z": TURN,
    "perspective_flip_theta": TURN, "perspective_flip_phi": TURN, "perspective_flip_gamma": TURN,
    "translation_x": SHIFT, "translation_y": SHIFT, "translation_z": SHIFT,
    "zoom": (lambda v: (v >= 0.01) & (v <= 100), "from 0.01 to 100 (1 = no zoom)"),
    "fov": (lambda v: (v > 0) & (v < 180), "between 0 and 180 degrees"),
    "perspective_flip_fov": (lambda v: (v > 0) & (v < 180), "between 0 and 180 degrees"),
    "contrast": (lambda v: (v >= 0) & (v <= 10), "from 0 to 10 (1 = unchanged)"),
    "noise": (lambda v: (v >= 0) & (v <= 10), "from 0 to 10"),
    "denoise_strength": (lambda v: (v >= 0) & (v <= 1), "in [0, 1] (0 keeps the warped frame, 1 redraws it from noise)"),
}
SCHEDULES = tuple(SCHEDULE_RANGES)
CHOICES = {
    "seed_behavior": ("iter", "fixed", "random"),
    "animation_mode": ("2D", "3D"),
    "border": ("replicate", "wrap"),
    "color_coherence": ("none", "RGB", "HSV", "LAB"),
    "sampling": ("bicubic", "bilinear"),
}


@dataclass
class AnimationSpec:
    """One animation. Build it in Python, or with ``from_yaml`` / ``from_dict`` (unknown keys are rejected).

    ``denoise_strength`` is the diffusers denoising strength handed to image-to-image: the fraction of the noise
    schedule that is re-run (0 = the warped frame is kept as it is, 1 = redrawn from pure noise). The original
    Deforum's ``strength`` is the opposite, the fraction KEPT: denoise_strength = 1 - Deforum strength.
    """

    prompts: list[str]
    durations: list[float]  # seconds per prompt; prompt i starts at frame int(sum(durations[:i]) * fps)
    fps: float = 24.0
    width: int = 640
    height: int = 640
    seed: int = 0
    seed_behavior: str = "iter"  # iter: +1 per diffused frame; fixed; random: drawn from a generator seeded by seed
    animation_mode: str = "3D"
    cadence: int = 2  # diffuse every cadence-th frame; the frames between are warps cross-faded between two samples
    sampling: str = "bicubic"  # warp interpolation: bicubic stays sharper over many warps (OpenCV's 2D: bilinear)

    # 2D motion: rotation (degrees, counter-clockwise) and zoom (> 1 zooms in) about the centre, translation in pixels,
    # and an optional perspective tilt (degrees) seen with field of view perspective_flip_fov.
    angle: str = "0:(0)"
    zoom: str = "0:(1.0)"
    translation_x: str = "0:(0)"  # 2D: pixels; 3D: world units (1/200 of the frame's half-width at depth 1)
    translation_y: str = "0:(0)"
    border: str = "replicate"  # 2D only: what the warp shows where it runs off the frame
    perspective_flip: bool = False
    perspective_flip_theta: str = "0:(0)"  # about z (in the image plane)
    perspective_flip_phi: str = "0:(0)"  # about x
    perspective_flip_gamma: str = "0:(0)"  # about y
    perspective_flip_fov: str = "0:(56)"

    # 3D motion: the camera moves (+z forward) and turns (degrees, Euler XYZ); fov in degrees.
    translation_z: str = "0:(0)"
    rotation_3d_x: str = "0:(0)"
    rotation_3d_y: str = "0:(0)"
    rotation_3d_z: str = "0:(0)"
    fov: str = "0:(40)"

    # Repairs applied to each warped frame before image-to-image, in this order.
    color_coherence: str = "none"  # histogram-match to frame 0 in this colour space
    contrast: str = "0:(1.0)"
    unsharp_kernel: int = 5
    unsharp_sigma: float = 1.0
    unsharp_amount: float = 0.2
    unsharp_threshold: float = 0.0  # in 0-255 levels, as in the original
    noise: str = "0:(0.0)"  # std of Gaussian noise in [-1, 1] pixel units
    denoise_strength: str = "0:(0.13)"

    # One camera-move preset per prompt ("none" for a still segment) and its acceleration (1.0 each by default).
    motion_presets: list[str] | None = None
    accelerations: list[float] | None = None

    def __post_init__(self):
        self._check_prompts()
        self._check_numbers()
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in SCHEDULES:
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(self, name, value := str(value))  # YAML turns `zoom: 1.02` into a float
            try:
                parse_schedule(value)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        self._check_presets()
        self.schedules()  # every value at every frame in range, before any model runs

    def _check_prompts(self):
        if not isinstance(self.prompts, list) or not self.prompts or not all(isinstance(p, str) for p in self.prompts):
            raise ValueError(f"prompts must be a non-empty list of strings, e.g. ['a castle at dawn'], "
                             f"got {self.prompts!r}")
        if not isinstance(self.durations, list) or len(self.durations) != len(self.prompts):
            raise ValueError(f"durations must be a list with one duration in seconds per prompt "
                             f"({len(self.prompts)}), got {self.durations!r}")
        for index, duration in enumerate(self.durations):
            SECONDS.check(f"durations[{index}] (seconds)", duration)

    def _check_numbers(self):
        for name, limit in NUMBERS.items():
            value = limit.check(name, getattr(self, name))
            if not limit.integer and isinstance(getattr(self, name), int):
                setattr(self, name, value)  # YAML's `fps: 24` is an int
            elif limit.integer and not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} must be a whole number, got {getattr(self, name)!r}")
        if self.unsharp_kernel % 2 == 0:
            raise ValueError(f"unsharp_kernel must be odd (a Gaussian kernel has a centre), got {self.unsharp_kernel}")
        if self.num_frames > MAX_FRAMES:
            raise ValueError(f"the animation would have {self.num_frames} frames ({sum(self.durations):g} s at "
                             f"{self.fps:g} fps); the limit is {MAX_FRAMES}: shorten the durations or lower fps")
        if self.seed_behavior == "iter" and self.seed + self.num_frames > MAX_SEED:
            raise ValueError(f"seed {self.seed} + one per frame passes the largest seed {MAX_SEED}; use a smaller seed")
        if not isinstance(self.perspective_flip, bool):
            raise ValueError(f"perspective_flip must be true or false, got {self.perspective_flip!r}")

    def _check_presets(self):
        if self.motion_presets is None:
            if self.accelerations is not None:
                raise ValueError("accelerations need motion_presets: give one preset per prompt")
            return
        if not isinstance(self.motion_presets, list) or len(self.motion_presets) != len(self.prompts):
            raise ValueError(f"motion_presets must be a list with one preset per prompt ({len(self.prompts)}), "
                             f"got {self.motion_presets!r}")
        for preset in self.motion_presets:
            if preset != NO_PRESET and preset not in MOTION_PRESETS:
                raise ValueError(f"unknown motion preset {preset!r}; the presets are {NO_PRESET!r}, "
                                 f"{', '.join(map(repr, MOTION_PRESETS))}")
        if self.animation_mode != "3D" and set(self.motion_presets) != {NO_PRESET}:
            raise ValueError("motion presets are 3D camera moves: set animation_mode: 3D")
        if self.accelerations is None:
            self.accelerations = [1.0] * len(self.prompts)
        if (not isinstance(self.accelerations, list) or len(self.accelerations) != len(self.prompts)
                or not all(_is_number(a) and a > 0 for a in self.accelerations)):
            raise ValueError(f"accelerations must be one positive number per prompt ({len(self.prompts)}); "
                             f"for the opposite move use the opposite preset. Got {self.accelerations!r}")

    @classmethod
    def from_dict(cls, data: dict) -> "AnimationSpec":
        if not isinstance(data, dict):
            raise ValueError(f"an animation spec is a mapping of settings, got {type(data).__name__}")
        names = [field.name for field in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                closest = difflib.get_close_matches(str(key), names, n=1, cutoff=0.0)[0]
                raise ValueError(f"unknown animation setting {key!r}; did you mean {closest!r}?")
        missing = [name for name in ("prompts", "durations") if name not in data]
        if missing:
            raise ValueError(f"an animation spec needs {' and '.join(missing)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "AnimationSpec":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"animation spec {path} does not exist")
        try:
            return cls.from_dict(yaml.safe_load(path.read_text()))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @property
    def num_frames(self) -> int:
        return int(sum(self.durations) * self.fps) + 1

    @property
    def prompt_starts(self) -> list[int]:
        """The frame at which each prompt takes over (the switch is abrupt)."""
        return [int(sum(self.durations[:i]) * self.fps) for i in range(len(self.prompts))]

    def prompt_at(self, frame: int) -> str:
        return self.prompts[bisect.bisect_right(self.prompt_starts, frame) - 1]

    def schedules(self) -> dict[str, np.ndarray]:
        """Every schedule evaluated at each frame, presets added: name -> float64 array of shape (num_frames,)."""
        n = self.num_frames
        values = {name: evaluate_schedule(getattr(self, name), n) for name in SCHEDULES}
        starts = self.prompt_starts
        ends = starts[1:] + [n - 1]
        frames = np.arange(n)
        for preset, acceleration, start, end in zip(self.motion_presets or [], self.accelerations or [], starts, ends):
            if preset == NO_PRESET or end <= start:
                continue
            ramp = np.where((frames >= start) & (frames < end), 1.0 - (frames - start) / (end - start), 0.0)
            for name, unit in MOTION_PRESETS[preset].items():
                values[name] = values[name] + unit * acceleration * ramp
        for name, (valid, wanted) in SCHEDULE_RANGES.items():
            bad = ~valid(values[name])
            if bad.any():
                frame = int(np.argmax(bad))
                raise ValueError(f"{name} is {values[name][frame]:.4g} at frame {frame}; it must be {wanted}")
        return values


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
