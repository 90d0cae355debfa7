"""Tiny synthetic text-video data (coloured squares moving across a plain background), for tests and benchmarks."""

import csv
import os
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}


def moving_square(colour: str, num_frames: int, height: int, width: int, speed: int = 2) -> np.ndarray:
    """(T, H, W, 3) uint8: a square of ``colour`` moving right by ``speed`` pixels a frame, wrapping around."""
    frames = np.full((num_frames, height, width, 3), 16, dtype=np.uint8)
    side = max(4, min(height, width) // 4)
    top = (height - side) // 2
    for index in range(num_frames):
        left = (index * speed) % (width - side)
        frames[index, top : top + side, left : left + side] = COLOURS[colour]
    return frames


def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: float = 24.0) -> Path:
    """Write (T, H, W, 3) uint8 as H.264 mp4 (what decord reads in training)."""
    path = Path(path)
    with imageio.get_writer(path, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1,
                            format="FFMPEG", output_params=["-crf", "18"]) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def write_square_videos(
    folder: str | os.PathLike, count: int = 4, num_frames: int = 40, height: int = 64, width: int = 64
) -> Path:
    """``count`` moving-square videos in ``folder`` with same-named .txt captions and a ``manifest.csv``; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        colour = list(COLOURS)[index % len(COLOURS)]
        frames = moving_square(colour, num_frames, height, width, speed=1 + index % 3)
        video = write_mp4(frames, folder / f"{index:03d}.mp4")
        caption = f"a {colour} square moving right"
        video.with_suffix(".txt").write_text(caption)
        rows.append({"video": video.name, "caption": caption})
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["video", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
