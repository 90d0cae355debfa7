"""The allowed range of every numeric generation setting: one table for the command line, the pipelines and the app.

A value outside its range is refused before any work starts, with a message naming the setting and the range: NaN
guidance used to write an all-black video, a seed of -1 silently meant 2**64 - 1, an infinite frame rate or
duration failed deep inside a writer. The bounds are what the models and samplers can use at all, not what a
machine can afford; the app adds tighter limits of its own for visitors.
"""

import argparse
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 0 .. 2**64 - 1 (negative seeds wrap around onto these)


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``low < value`` when ``low_open``), finite, and a whole number when ``integer``."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a finite number"
        low, high = _show(self.low), _show(self.high)
        return f"{kind} above {low} and at most {high}" if self.low_open else f"{kind} from {low} to {high}"

    def check(self, name: str, value: object) -> int | float:
        """``value`` as an int (``integer``) or a float if it is in range, else ValueError naming ``name``."""
        valid = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if valid and not isinstance(value, numbers.Integral):  # ints are exact at any size; floats must be finite
            valid = math.isfinite(value) and (not self.integer or float(value).is_integer())
        if valid:
            valid = (value > self.low if self.low_open else value >= self.low) and value <= self.high
        if not valid:
            raise ValueError(f"{name} must be {self.describe()}, got {_show(value)}")
        return int(value) if self.integer else float(value)


def _show(value: object) -> str:
    """Whole numbers in full (2**64 - 1 is not 1.84467e+19), others short; never a screenful."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        text = str(int(value))
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        text = str(int(value))
    else:
        text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


SIZE = Range(64, 4096, integer=True)
STEPS = Range(1, 1000, integer=True)  # the samplers' grids are drawn from 1000 training timesteps
GUIDANCE = Range(0, 100)
FPS = Range(0, 1000, low_open=True)
SEED = Range(0, MAX_SEED, integer=True)

LIMITS: dict[str, Range] = {
    "height": SIZE,
    "width": SIZE,
    "num_keyframes": Range(1, 256, integer=True),
    "num_inference_steps": STEPS,
    "interpolation_steps": STEPS,
    "guidance_scale": GUIDANCE,
    "interpolation_guidance_scale": GUIDANCE,
    "image_guidance_scale": GUIDANCE,
    "num_videos_per_prompt": Range(1, 64, integer=True),
    "decode_chunk_size": Range(1, 4096, integer=True),
    "strength": Range(0, 1, low_open=True),  # image-to-image: the fraction of the schedule re-run
    "fps": FPS,
    "seed": SEED,
}


def check_setting(name: str, value: object, label: str | None = None) -> int | float:
    """``value`` checked against ``LIMITS[name]``; the message calls it ``label`` (default: ``name``)."""
    return LIMITS[name].check(label or name, value)


def flag(limit: Range | str, integer: bool | None = None) -> Callable[[str], int | float]:
    """An argparse ``type=`` for a number in ``limit`` (a :class:`Range` or a ``LIMITS`` name).

    argparse then prints ``argument --guidance-scale: must be a finite number from 0 to 100, got 'nan'`` and exits
    with status 2, before any model loads.
    """
    limit = LIMITS[limit] if isinstance(limit, str) else limit
    whole = limit.integer if integer is None else integer

    def parse(text: str) -> int | float:
        try:
            return limit.check("value", int(text) if whole else float(text))
        except ValueError:  # not a number, or out of range: one message for both
            raise argparse.ArgumentTypeError(f"must be {limit.describe()}, got {_show(text)}") from None

    parse.__name__ = "whole number" if whole else "number"  # argparse names the type in its fallback messages
    return parse
