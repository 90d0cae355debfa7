"""Frechet distance between Gaussians fitted to features: FVD's last step, in each reference's arithmetic.

    d^2 = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))

The references differ in three knobs, each a parameter here:

- covariance divisor: ``"biased"`` 1/N (StyleGAN-V's metric code) or ``"unbiased"`` 1/(N-1) (TF, numpy ``np.cov``);
- square root: ``"scipy"`` = real part of ``scipy.linalg.sqrtm(S_g @ S_r)`` (StyleGAN-V), or ``"svd"`` =
  Tr(sqrt(sqrt(S_r) S_g sqrt(S_r))) with SVD square roots that keep singular values below 1e-10 unrooted (TF-GAN,
  copied by VideoGPT/TATS);
- precision: float64 (TF casts to float64; StyleGAN-V accumulates in float64) or float32 (TATS runs in torch fp32).
"""

from typing import Literal

import numpy as np
import scipy.linalg
import torch

Covariance = Literal["biased", "unbiased"]
SquareRoot = Literal["scipy", "svd"]
Precision = Literal["float64", "float32"]


def feature_statistics(
    features: np.ndarray, covariance: Covariance = "biased", precision: Precision = "float64"
) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of (N, D) features with the chosen divisor."""
    features = np.asarray(features, dtype=precision)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need (N >= 2, D) features for a covariance, got shape {features.shape}")
    if covariance not in ("biased", "unbiased"):
        raise ValueError(f"covariance must be 'biased' (1/N) or 'unbiased' (1/(N-1)), got {covariance!r}")
    mu = features.mean(axis=0)
    centred = features - mu
    divisor = len(features) - (covariance == "unbiased")
    return mu, centred.T @ centred / divisor


def frechet_distance(
    mu_real: np.ndarray,
    sigma_real: np.ndarray,
    mu_fake: np.ndarray,
    sigma_fake: np.ndarray,
    sqrtm: SquareRoot = "scipy",
    precision: Precision = "float64",
) -> float:
    """Frechet distance between N(mu_real, sigma_real) and N(mu_fake, sigma_fake)."""
    mu_real, sigma_real, mu_fake, sigma_fake = (
        np.asarray(a, dtype=precision) for a in (mu_real, sigma_real, mu_fake, sigma_fake)
    )
    mean_term = np.square(mu_real - mu_fake).sum()
    if sqrtm == "scipy":
        root = scipy.linalg.sqrtm(sigma_fake @ sigma_real)
        trace_root = np.trace(np.real(root))
    elif sqrtm == "svd":
        trace_root = _trace_sqrt_product_svd(torch.from_numpy(sigma_real), torch.from_numpy(sigma_fake)).item()
    else:
        raise ValueError(f"sqrtm must be 'scipy' or 'svd', got {sqrtm!r}")
    return float(mean_term + np.trace(sigma_real) + np.trace(sigma_fake) - 2 * trace_root)


def _symmetric_sqrt(matrix: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """TF-GAN's square root of a symmetric PSD matrix by SVD; singular values below eps are kept, not rooted."""
    u, s, vh = torch.linalg.svd(matrix)
    s = torch.where(s < eps, s, s.sqrt())
    return u @ torch.diag(s) @ vh


def _trace_sqrt_product_svd(sigma: torch.Tensor, sigma_v: torch.Tensor) -> torch.Tensor:
    """Tr(sqrt(sigma @ sigma_v)) as Tr(sqrt(sqrt(sigma) sigma_v sqrt(sigma))), which is symmetric."""
    root = _symmetric_sqrt(sigma)
    return torch.trace(_symmetric_sqrt(root @ sigma_v @ root))
