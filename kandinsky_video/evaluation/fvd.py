"""Frechet Video Distance: protocol variants, I3D preprocessing, features, and cached real-set statistics.

A protocol fixes everything between a uint8 clip and the number (see ``/docs/evaluation.md``):

=========== ====================================== ========= ========== ======= =========
protocol    resize to 224x224                      range     covariance sqrtm   precision
=========== ====================================== ========= ========== ======= =========
styleganv   torch bilinear, whole frame            [-1, 1]   1/N        scipy   float64
tf          TF1 legacy bilinear, whole frame       [-1, 1]   1/(N-1)    svd     float64
tats        shorter side + centre crop (bilinear)  [-1, 1]   1/(N-1)    svd     float32
videogpt    shorter side + centre crop (bilinear)  [-.5, .5] 1/(N-1)    svd     float32
=========== ====================================== ========= ========== ======= =========

``styleganv`` is StyleGAN-V's ``fvd2048_16f``, the protocol the Kandinsky Video paper cites (the default).
``videogpt`` keeps VideoGPT's range bug (it never rescales to [-1, 1]) so its published numbers can be reproduced.
"""

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .frechet import Covariance, Precision, SquareRoot, feature_statistics, frechet_distance
from .i3d import INPUT_SIZE
from .videos import batch_clips

logger = logging.getLogger(__name__)

Resize = Literal["bilinear", "tf1_bilinear", "short_side_crop"]


@dataclass(frozen=True)
class FVDProtocol:
    name: str
    resize: Resize
    input_range: tuple[float, float]
    covariance: Covariance
    sqrtm: SquareRoot
    precision: Precision


FVD_PROTOCOLS = {
    "styleganv": FVDProtocol("styleganv", "bilinear", (-1.0, 1.0), "biased", "scipy", "float64"),
    "tf": FVDProtocol("tf", "tf1_bilinear", (-1.0, 1.0), "unbiased", "svd", "float64"),
    "tats": FVDProtocol("tats", "short_side_crop", (-1.0, 1.0), "unbiased", "svd", "float32"),
    "videogpt": FVDProtocol("videogpt", "short_side_crop", (-0.5, 0.5), "unbiased", "svd", "float32"),
}


def get_protocol(name: str) -> FVDProtocol:
    if name not in FVD_PROTOCOLS:
        raise ValueError(f"unknown FVD protocol {name!r}; choose one of {sorted(FVD_PROTOCOLS)}")
    return FVD_PROTOCOLS[name]


def tf1_resize_bilinear(frames: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 ``tf.image.resize_bilinear`` (align_corners=False, no half-pixel centres): source = target * in/out."""

    def taps(in_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        source = torch.arange(size, dtype=torch.float32) * (in_size / size)
        low = source.floor().long()
        return low, (low + 1).clamp(max=in_size - 1), source - low

    left, right, x_weight = taps(frames.shape[-1])
    frames = frames[..., left] + (frames[..., right] - frames[..., left]) * x_weight
    top, bottom, y_weight = taps(frames.shape[-2])
    return frames[..., top, :] + (frames[..., bottom, :] - frames[..., top, :]) * y_weight[:, None]


def _short_side_centre_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """VideoGPT/TATS: shorter side to ``size`` (ceil for the longer one), bilinear, then the centre crop."""
    height, width = frames.shape[-2:]
    scale = size / min(height, width)
    target = (size, math.ceil(width * scale)) if height < width else (math.ceil(height * scale), size)
    frames = F.interpolate(frames, size=target, mode="bilinear", align_corners=False)
    top, left = (target[0] - size) // 2, (target[1] - size) // 2
    return frames[..., top : top + size, left : left + size]


def preprocess_clips(clips: torch.Tensor, protocol: FVDProtocol) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> I3D input (B, 3, T, 224, 224) in the protocol's range."""
    batch, num_frames = clips.shape[:2]
    frames = clips.flatten(0, 1).permute(0, 3, 1, 2).float()  # (B*T, 3, H, W) in 0..255
    if protocol.resize == "bilinear":
        frames = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    elif protocol.resize == "tf1_bilinear":
        frames = tf1_resize_bilinear(frames, INPUT_SIZE)
    else:
        frames = _short_side_centre_crop(frames, INPUT_SIZE)
    low, high = protocol.input_range
    frames = frames * ((high - low) / 255.0) + low
    return frames.reshape(batch, num_frames, 3, INPUT_SIZE, INPUT_SIZE).transpose(1, 2)  # (B, 3, T, 224, 224)


@torch.inference_mode()
def i3d_features(
    i3d: torch.nn.Module,
    clips: Iterable[np.ndarray],
    protocol: FVDProtocol,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """(N, 400) float32 I3D logits of uint8 (T, H, W, 3) clips of equal shape, preprocessed per ``protocol``."""
    features = []
    for batch in batch_clips(clips, batch_size):
        video = preprocess_clips(torch.from_numpy(batch), protocol).to(device)
        features.append(i3d(video).float().cpu().numpy())
        if len(features) % 25 == 0:
            logger.info("I3D features: %d clips", sum(len(f) for f in features))
    if not features:
        raise ValueError("no clips to compute I3D features of (empty folder, or every video shorter than a clip?)")
    return np.concatenate(features)


def statistics_settings(protocol: FVDProtocol, **settings) -> dict:
    """The cache key's content: the protocol fields that change statistics plus the caller's data/model settings."""
    fields = dataclasses.asdict(protocol)
    del fields["name"], fields["sqrtm"]  # the square root is applied later; the name is implied by the fields
    return {"protocol": fields, **settings}


def statistics_cache_path(cache_dir: str | Path, settings: dict) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return Path(cache_dir) / "fvd_stats" / f"{digest[:24]}.npz"


def cached_statistics(
    cache_dir: str | Path | None,
    settings: dict,
    compute_features: Callable[[], np.ndarray],
    covariance: Covariance,
    precision: Precision,
) -> tuple[np.ndarray, np.ndarray, int, Path | None]:
    """(mu, sigma, N, cache file) of a real set, read from ``cache_dir`` if these ``settings`` were seen before."""
    path = statistics_cache_path(cache_dir, settings) if cache_dir is not None else None
    key = json.dumps(settings, sort_keys=True, default=str)
    if path is not None and path.is_file():
        with np.load(path) as cached:
            if str(cached["settings"]) == key:
                logger.info("real-set statistics from cache %s", path)
                return cached["mu"], cached["sigma"], int(cached["count"]), path
    features = compute_features()
    mu, sigma = feature_statistics(features, covariance, precision)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial.npz")
        try:
            np.savez(partial, mu=mu, sigma=sigma, count=len(features), settings=key)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        logger.info("cached real-set statistics in %s", path)
    return mu, sigma, len(features), path


def fvd_from_features(real: np.ndarray, fake: np.ndarray, protocol: FVDProtocol) -> float:
    """FVD of two (N, 400) feature sets under ``protocol``'s covariance, square root and precision."""
    stats_real = feature_statistics(real, protocol.covariance, protocol.precision)
    stats_fake = feature_statistics(fake, protocol.covariance, protocol.precision)
    return frechet_distance(*stats_real, *stats_fake, sqrtm=protocol.sqrtm, precision=protocol.precision)
