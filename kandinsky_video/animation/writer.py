"""A streaming mp4 writer: frames are encoded as they arrive, so a long animation never sits in memory.

The file is written under a hidden partial name and moved to its real name only by a clean ``close``: a crash or an
exception inside ``with`` leaves no half-written video under the name the user asked for.
"""

import logging
import os
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from ..pipelines.export import to_uint8

logger = logging.getLogger(__name__)


class Mp4Writer:
    """H.264 (libx264, yuv420p) mp4 writer taking (H, W, 3) frames in [0, 1] or uint8 one at a time.

        with Mp4Writer("flight.mp4", fps=spec.fps) as writer:
            render_animation(spec, text_to_image, image_to_image, writer)
    """

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise ValueError(f"Mp4Writer writes .mp4 files, got {self.path.name!r}")
        self.partial = self.path.with_name(f".{self.path.stem}.partial.mp4")
        self.fps = fps
        self.frames = 0
        self._writer = None
        self._shape: tuple[int, ...] | None = None

    def write(self, frame: np.ndarray) -> None:
        frame = to_uint8(np.asarray(frame))
        if self._writer is None:
            self._open(frame.shape)
        elif frame.shape != self._shape:
            raise ValueError(f"frame {self.frames} is {frame.shape}, earlier frames {self._shape}: keep one size")
        self._writer.append_data(frame)
        self.frames += 1

    def _open(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"frames must be (H, W, 3), got {shape}")
        if shape[0] % 2 or shape[1] % 2:
            raise ValueError(f"H.264 in yuv420p needs an even width and height, got {shape[1]}x{shape[0]}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # macro_block_size=1: keep the exact size instead of imageio's silent resize to multiples of 16.
        self._writer = imageio.get_writer(self.partial, format="FFMPEG", fps=self.fps, codec="libx264",
                                          pixelformat="yuv420p", macro_block_size=1)
        self._shape = shape

    def close(self) -> Path:
        """Finish the file and give it its real name."""
        if self._writer is None:
            raise ValueError(f"no frames were written, so {self.path} was not created")
        try:
            self._writer.close()
            self._writer = None
            os.replace(self.partial, self.path)
        finally:
            self.partial.unlink(missing_ok=True)  # gone already when the rename worked
        logger.info("wrote %d frames to %s", self.frames, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
