"""Video files in and out, and the clip every metric sees: uint8 (T, H, W, 3) frames, RGB.

Samples are written as mp4 with ``libx264rgb`` at CRF 0, which round-trips uint8 RGB exactly (yuv420p would blur
chroma and shift FVD); :data:`VIDEO_WRITER` is recorded in every results file.
"""

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import imageio.v2 as imageio
import numpy as np
import torch
import torch.nn.functional as F

from ..pipelines.export import atomic_output
from ..pipelines.limits import check_setting

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".gif")
VIDEO_WRITER = {"format": "mp4", "codec": "libx264rgb", "pixelformat": "rgb24", "crf": 0}

Offset = Literal["start", "random"]


def list_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files under ``folder`` (recursively) in case-sensitive sorted order; hidden (partial) files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist")
    videos = (p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))
    return sorted(videos, key=lambda p: str(p.relative_to(folder)))


class UnreadableVideo(ValueError):
    """A video file ffmpeg cannot decode (corrupt, truncated, not a video); metrics skip it and name it."""


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB; stops decoding after ``max_frames`` when given. A file that exists but does not
    decode raises :class:`UnreadableVideo`; a missing one FileNotFoundError."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    frames = []
    try:
        reader = imageio.get_reader(str(path), format="FFMPEG")
        try:
            for frame in reader:
                frames.append(frame[..., :3])
                if max_frames is not None and len(frames) >= max_frames:
                    break
        finally:
            reader.close()
    except (OSError, RuntimeError) as error:  # imageio-ffmpeg: "Could not load meta information", broken streams
        lines = [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        reason = lines[0] if len(lines) == 1 else f"{lines[0]}: {lines[-1]}"  # the last line is ffmpeg's verdict
        raise UnreadableVideo(f"{path} cannot be decoded ({reason}); is it a complete video file?") from error
    if not frames:
        raise UnreadableVideo(f"{path} has no decodable frames; is it a complete video file?")
    return np.stack(frames)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0) -> None:
    """Write (T, H, W, 3) uint8 losslessly; the file appears only when complete, and a failed write leaves nothing."""
    if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3):
        shape = getattr(frames, "shape", None)
        raise ValueError(f"a video must be a (T, H, W, 3) uint8 numpy array, got {type(frames).__name__} {shape}")
    check_setting("fps", fps)
    with atomic_output(Path(path)) as partial:
        writer = imageio.get_writer(
            str(partial),
            format="FFMPEG",
            fps=fps,
            codec=VIDEO_WRITER["codec"],
            pixelformat=VIDEO_WRITER["pixelformat"],
            macro_block_size=1,
            output_params=["-crf", str(VIDEO_WRITER["crf"])],
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()


def select_clip(
    video: np.ndarray,
    num_frames: int,
    stride: int = 1,
    offset: Offset = "start",
    rng: np.random.Generator | None = None,
) -> np.ndarray | None:
    """``num_frames`` frames ``stride`` apart, from frame 0 or a random start; None if the video is too short."""
    span = (num_frames - 1) * stride + 1
    if len(video) < span:
        return None
    if offset == "start":
        start = 0
    elif offset == "random":
        if rng is None:
            raise ValueError("offset='random' needs an rng (numpy Generator) so the clip choice is reproducible")
        start = int(rng.integers(0, len(video) - span + 1))
    else:
        raise ValueError(f"offset must be 'start' or 'random', got {offset!r}")
    return video[start : start + span : stride]


def resize_square(clip: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bilinear, antialiased) and centre-crop to size x size; uint8 out.

    Brings real and generated clips to one resolution (StyleGAN-V's datasets are stored at 256x256) before the
    metric's own preprocessing.
    """
    height, width = clip.shape[1:3]
    if (height, width) == (size, size):
        return clip
    scale = size / min(height, width)
    target = (max(size, round(height * scale)), max(size, round(width * scale)))
    frames = torch.from_numpy(clip).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    frames = F.interpolate(frames, size=target, mode="bilinear", align_corners=False, antialias=True)
    top, left = (target[0] - size) // 2, (target[1] - size) // 2
    frames = frames[:, :, top : top + size, left : left + size]
    return frames.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def batch_clips(clips: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Stack equally shaped clips into (B, T, H, W, 3) batches, the last one possibly smaller."""
    batch = []
    for clip in clips:
        batch.append(clip)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)
