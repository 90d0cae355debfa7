"""A procedural text-video world for the demo model: coloured shapes moving on plain backgrounds, with captions.

Deterministic by seed. Some colour-shape pairs never appear in training (``HELD_OUT``), so the demo can be asked
for compositions it has not seen. Videos are 24 fps, like the source videos the keyframe positions assume.
"""

import argparse
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..pipelines.export import write_video

COLOURS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.15, 0.3, 0.95), "yellow": (0.95, 0.85, 0.1)}
BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0), "gray": (0.5, 0.5, 0.5)}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")
HELD_OUT = {("green", "triangle"), ("yellow", "circle"), ("blue", "square")}
FPS = 24
SUPERSAMPLE = 4  # anti-aliased edges: render 4x larger, then average


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: str
    motion: str

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} {self.motion} on a {self.background} background"


def all_scenes(held_out: bool | None = None) -> list[Scene]:
    """Every scene; ``held_out`` True / False keeps only the held-out / training colour-shape pairs."""
    scenes = [Scene(*combo) for combo in itertools.product(SHAPES, COLOURS, BACKGROUNDS, MOTIONS)]
    if held_out is None:
        return scenes
    return [s for s in scenes if ((s.colour, s.shape) in HELD_OUT) == held_out]


def trajectory(motion: str, frames: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Centre (frames, 2) as (x, y) in pixels and radius (frames,), keeping the shape inside the frame."""
    t = np.linspace(0.0, 1.0, frames)
    radius = np.full(frames, size * rng.uniform(0.12, 0.16))
    if motion in ("growing", "shrinking"):
        small, large = size * 0.08, size * 0.24
        radius = small + (large - small) * (t if motion == "growing" else 1 - t)
        centre = np.tile(size / 2 + rng.uniform(-0.05, 0.05, 2) * size, (frames, 1))
        return centre, radius
    margin = radius[0] + 2
    travel = np.linspace(margin, size - margin, frames)
    across = rng.uniform(margin + 4, size - margin - 4)
    axis_forward = {"moving right": (travel, 0), "moving left": (travel[::-1], 0),
                    "moving down": (travel, 1), "moving up": (travel[::-1], 1)}
    along, axis = axis_forward[motion]
    centre = np.empty((frames, 2))
    centre[:, axis], centre[:, 1 - axis] = along, across
    return centre, radius


def shape_mask(shape: str, centre: np.ndarray, radius: float, size: int) -> np.ndarray:
    """(size, size) coverage in [0, 1] of a shape whose circumradius-like size is ``radius``."""
    scale = size * SUPERSAMPLE
    ys, xs = np.mgrid[0:scale, 0:scale] / SUPERSAMPLE + 0.5 / SUPERSAMPLE
    dx, dy = xs - centre[0], ys - centre[1]
    if shape == "circle":
        inside = dx**2 + dy**2 <= radius**2
    elif shape == "square":
        half = radius * 0.886  # same area as the circle
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    else:  # upward triangle with its centroid at the centre
        side = radius * 2.69  # same area as the circle
        height = side * np.sqrt(3) / 2
        top, bottom = -2 * height / 3, height / 3
        inside = (dy >= top) & (dy <= bottom) & (np.abs(dx) <= (dy - top) / np.sqrt(3))
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def render(scene: Scene, frames: int = 49, size: int = 64, seed: int = 0) -> np.ndarray:
    """(frames, size, size, 3) float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    centre, radius = trajectory(scene.motion, frames, size, rng)
    background = np.array(BACKGROUNDS[scene.background], np.float32)
    colour = np.array(COLOURS[scene.colour], np.float32)
    video = np.empty((frames, size, size, 3), np.float32)
    for i in range(frames):
        coverage = shape_mask(scene.shape, centre[i], radius[i], size)[..., None]
        video[i] = (1 - coverage) * background + coverage * colour
    return video


def write_world(out: str | Path, scenes: list[Scene], repeats: int = 1, frames: int = 49, size: int = 64,
                seed: int = 0) -> Path:
    """Render each scene ``repeats`` times (other positions/sizes) to mp4 and write ``manifest.jsonl``."""
    out = Path(out)
    rows = []
    for index, (scene, repeat) in enumerate(itertools.product(scenes, range(repeats))):
        name = f"videos/{index:05d}.mp4"
        write_video(render(scene, frames, size, seed=seed * 100003 + index), out / name, fps=FPS)
        rows.append({"video": name, "caption": scene.caption, **asdict(scene)})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the demo world's training (or held-out) videos and manifest.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--split", choices=("train", "held-out", "all"), default="train")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scenes = all_scenes({"train": False, "held-out": True, "all": None}[args.split])
    print(f"wrote {write_world(args.out, scenes, args.repeats, args.frames, seed=args.seed)} ({len(scenes) * args.repeats} videos)")


if __name__ == "__main__":
    main()
