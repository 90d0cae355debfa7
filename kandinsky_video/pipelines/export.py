"""Writing generated frames to mp4 or gif and images to PNG / JPEG, atomically (a crash never leaves half a file
under the final name, nor a partial file beside it), and strips of frames to PNG for the docs."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from .limits import check_setting

VIDEO_SUFFIXES = (".mp4", ".gif")


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) floats in [0, 1] (or uint8) -> uint8."""
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float) -> Path:
    """Write (T, H, W, 3) frames as .mp4 (H.264, yuv420p) or .gif at ``fps`` frames per second."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"cannot write {path.name!r}: use one of {VIDEO_SUFFIXES}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    check_setting("fps", fps)
    frames = to_uint8(frames)
    with atomic_output(path) as partial:
        if suffix == ".mp4":
            with imageio.get_writer(partial, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1,
                                    format="FFMPEG") as writer:
                for frame in frames:
                    writer.append_data(frame)
        else:
            imageio.mimsave(partial, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
    return path


def write_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save a PIL image atomically, in the format its suffix names."""
    path = Path(path)
    with atomic_output(path) as partial:
        image.save(partial, format=Image.registered_extensions().get(path.suffix.lower()))
    return path


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A hidden partial name next to ``path`` to write to, renamed to ``path`` only if the block completes: on any
    failure (an exception, Ctrl-C) the partial file is removed and nothing appears under the real name."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_strip(videos: np.ndarray, path: str | os.PathLike, frames: int = 6, scale: int = 2) -> np.ndarray:
    """(N, T, H, W, 3) videos -> a PNG with one row per video of ``frames`` evenly spaced frames, upscaled ``scale``
    times (nearest: small frames stay crisp). Returns the frame indices shown."""
    picks = np.linspace(0, videos.shape[1] - 1, frames).round().astype(int)
    grid = np.concatenate([np.concatenate(list(video[picks]), axis=1) for video in videos], axis=0)
    image = Image.fromarray(to_uint8(grid))
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(path)
    return picks
