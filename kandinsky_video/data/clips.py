"""Cutting a training clip out of a video: which source frames, decoded with decord, resized and centre-cropped.

Each trainer asks for its own clip shape (:class:`ClipSpec`):

- keyframes: 16 frames 12 source frames apart (2 fps of ~24 fps video), random start; the model also gets the
  frames' positions (source-frame offsets from the first frame: 0, 12, 24, ...);
- interpolation: (k+1)*G+1 frames s source frames apart, s drawn from 1..12 per clip (the skip condition);
  frames 0, k+1, 2(k+1), ... are the keyframes, the k frames between each pair the targets (33 frames for k=3, G=8);
- decoder: 8 consecutive frames.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .records import VideoRecord


class UnreadableVideo(Exception):
    """A video that cannot give a clip (corrupt, missing, too short); the dataset skips it and counts it."""


@dataclass(frozen=True)
class ClipSpec:
    """``num_frames`` frames with consecutive frames ``stride`` source frames apart, stride drawn uniformly from
    ``min_stride..max_stride`` (capped by the video's length; a video too short even for ``min_stride`` is skipped),
    starting anywhere, or at most ``latest_start`` source frames into the video's span (in a share
    ``latest_start_share`` of the clips; the rest start anywhere)."""

    num_frames: int
    min_stride: int = 1
    max_stride: int = 1
    latest_start: int | None = None
    latest_start_share: float = 1.0

    def __post_init__(self):
        if self.num_frames < 1 or not 1 <= self.min_stride <= self.max_stride:
            raise ValueError(f"invalid clip: {self}; need num_frames >= 1 and 1 <= min_stride <= max_stride")
        if self.latest_start is not None and self.latest_start < 0:
            raise ValueError(f"invalid clip: {self}; latest_start must be >= 0 (or None: anywhere)")
        if not 0.0 <= self.latest_start_share <= 1.0:
            raise ValueError(f"invalid clip: {self}; latest_start_share must be in [0, 1]")


def choose_frames(first: int, last: int, spec: ClipSpec, rng: np.random.Generator) -> np.ndarray | None:
    """Source indices (num_frames,) inside [first, last): random stride and start; None if the span is too short."""
    available = last - first
    longest = spec.max_stride if spec.num_frames == 1 else (available - 1) // (spec.num_frames - 1)
    high = min(spec.max_stride, longest)
    if available < 1 or high < spec.min_stride:
        return None
    stride = int(rng.integers(spec.min_stride, high + 1))
    span = (spec.num_frames - 1) * stride + 1
    share = spec.latest_start_share
    capped = spec.latest_start is not None and (share == 1.0 or rng.random() < share)  # no draw when always capped
    latest = min(available - span, spec.latest_start) if capped else available - span
    start = first + int(rng.integers(0, latest + 1))
    return start + stride * np.arange(spec.num_frames)


def read_clip(record: VideoRecord, spec: ClipSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T, H, W, 3) uint8, source indices (T,)); raises :class:`UnreadableVideo` when no clip can be cut."""
    import decord  # the `train` extra; imported here so the rest of the package works without it

    try:
        reader = decord.VideoReader(record.path, ctx=decord.cpu(0), num_threads=1)
        count, fps = len(reader), reader.get_avg_fps()
        first = 0 if record.start is None else math.floor(record.start * fps)
        last = count if record.end is None else min(count, math.ceil(record.end * fps))
        indices = choose_frames(first, last, spec, rng)
        if indices is None:
            raise UnreadableVideo(
                f"too short: {last - first} frames in the span, a clip needs "
                f"{(spec.num_frames - 1) * spec.min_stride + 1}"
            )
        return reader.get_batch(indices.tolist()).asnumpy(), indices
    except (RuntimeError, OSError, decord.DECORDError) as error:  # decord reports corrupt/missing files as these
        raise UnreadableVideo(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}") from error


def resize_center_crop(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, height, width) float in [-1, 1]: centre crop to the target aspect, then resize.

    Cropping first means only kept pixels are resampled. Resampling stays in uint8 (bilinear with antialiasing, on
    torch's fast channels-last uint8 path, several times faster than in float on the CPU); the frames are 8-bit
    anyway.
    """
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8, channels-last in memory
    source_h, source_w = video.shape[-2:]
    crop_h, crop_w = min(source_h, round(source_w * height / width)), min(source_w, round(source_h * width / height))
    top, left = (source_h - crop_h) // 2, (source_w - crop_w) // 2
    video = video[:, :, top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) != (height, width):
        video = video.contiguous(memory_format=torch.channels_last)
        video = F.interpolate(video, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    # Reorder while still uint8 (a quarter of the bytes), then convert in place.
    video = video.contiguous().permute(1, 0, 2, 3).contiguous()  # (3, T, height, width) uint8
    return video.float().div_(127.5).sub_(1.0)
