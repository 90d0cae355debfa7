"""Video Inception Score on C3D (UCF-101) probabilities: IS = exp(E_x KL(p(y|x) || p(y))).

Two protocols, differing only in how the samples are split:

- ``tgan2`` (TGANv2): 10 loops of 2048 fresh samples, one IS per loop, mean +- std over loops. With N samples the
  loops are N/10 consecutive samples each, so N = 20,480 reproduces TGANv2 exactly.
- ``styleganv`` (StyleGAN-V): the probabilities are shuffled with ``np.random.RandomState(42)`` and cut into 10 splits.

The KL uses TGANv2's eps 1e-20 inside the logs and xlogy (0 log 0 = 0), so StyleGAN-V's eps-free code and ours
agree wherever StyleGAN-V's is finite.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import xlogy

from .videos import batch_clips

EPS = 1e-20


@dataclass(frozen=True)
class ISProtocol:
    name: str
    num_splits: int
    shuffle_seed: int | None


IS_PROTOCOLS = {
    "tgan2": ISProtocol("tgan2", num_splits=10, shuffle_seed=None),
    "styleganv": ISProtocol("styleganv", num_splits=10, shuffle_seed=42),
}


def get_is_protocol(name: str) -> ISProtocol:
    if name not in IS_PROTOCOLS:
        raise ValueError(f"unknown IS protocol {name!r}; choose one of {sorted(IS_PROTOCOLS)}")
    return IS_PROTOCOLS[name]


def inception_score(
    probabilities: np.ndarray, num_splits: int = 1, shuffle_seed: int | None = None, eps: float = EPS
) -> tuple[float, float]:
    """(mean, std) over ``num_splits`` consecutive splits of (N, C) class probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) < num_splits:
        raise ValueError(f"need (N >= num_splits={num_splits}, classes) probabilities, got {probabilities.shape}")
    if shuffle_seed is not None:
        probabilities = probabilities.copy()
        np.random.RandomState(shuffle_seed).shuffle(probabilities)
    n = len(probabilities)
    scores = []
    for i in range(num_splits):
        part = probabilities[i * n // num_splits : (i + 1) * n // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = xlogy(part, part + eps) - xlogy(part, marginal + eps)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


@torch.inference_mode()
def classifier_probabilities(
    classifier: torch.nn.Module, clips: Iterable[np.ndarray], batch_size: int = 16, device: str | torch.device = "cpu"
) -> np.ndarray:
    """(N, 101) probabilities of uint8 (16, H, W, 3) clips from an IS classifier of :mod:`.c3d`."""
    probabilities = [
        classifier(torch.from_numpy(batch).to(device)).double().cpu().numpy()
        for batch in batch_clips(clips, batch_size)
    ]
    if not probabilities:
        raise ValueError("no clips to classify for IS (empty folder, or every video shorter than 16 frames?)")
    return np.concatenate(probabilities)
