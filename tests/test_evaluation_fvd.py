"""FVD arithmetic: Frechet distance against a direct float64 computation, protocol preprocessing, statistics cache."""

import numpy as np
import pytest
import torch

from kandinsky_video.evaluation.frechet import feature_statistics, frechet_distance
from kandinsky_video.evaluation.fvd import (
    FVD_PROTOCOLS,
    cached_statistics,
    fvd_from_features,
    preprocess_clips,
    statistics_cache_path,
    statistics_settings,
    tf1_resize_bilinear,
)


def direct_frechet(real: np.ndarray, fake: np.ndarray, ddof: int) -> float:
    """||mu_r - mu_g||^2 + Tr(S_r) + Tr(S_g) - 2 sum sqrt(eig(S_r S_g)), all in float64 via np.cov."""
    sigma_real, sigma_fake = np.cov(real, rowvar=False, ddof=ddof), np.cov(fake, rowvar=False, ddof=ddof)
    eigenvalues = np.linalg.eigvals(sigma_real @ sigma_fake)  # real and >= 0 for a product of PSD matrices
    trace_root = np.sqrt(np.clip(eigenvalues.real, 0, None)).sum()
    mean_term = np.square(real.mean(0) - fake.mean(0)).sum()
    return float(mean_term + np.trace(sigma_real) + np.trace(sigma_fake) - 2 * trace_root)


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(12, 12))
    real = rng.normal(size=(64, 12)) @ mixing
    fake = rng.normal(size=(48, 12)) @ mixing * 1.3 + 0.5
    return real, fake


@pytest.mark.parametrize("covariance, ddof", [("biased", 0), ("unbiased", 1)])
@pytest.mark.parametrize("sqrtm", ["scipy", "svd"])
def test_frechet_distance_matches_direct_float64(features, covariance, ddof, sqrtm):
    real, fake = features
    value = frechet_distance(*feature_statistics(real, covariance), *feature_statistics(fake, covariance), sqrtm=sqrtm)
    assert value == pytest.approx(direct_frechet(real, fake, ddof), rel=1e-9)


def test_covariance_conventions_differ_by_the_divisor(features):
    real, _ = features
    (_, biased), (_, unbiased) = feature_statistics(real, "biased"), feature_statistics(real, "unbiased")
    np.testing.assert_allclose(biased * len(real) / (len(real) - 1), unbiased, rtol=1e-12)


def test_float32_protocol_is_close_to_float64_but_not_equal(features):
    real, fake = features
    value = fvd_from_features(real.astype(np.float32), fake.astype(np.float32), FVD_PROTOCOLS["tats"])
    expected = direct_frechet(real, fake, ddof=1)
    assert value == pytest.approx(expected, rel=1e-3) and value != pytest.approx(expected, rel=1e-9)


def test_identical_sets_have_zero_distance(features):
    real, _ = features
    assert fvd_from_features(real, real, FVD_PROTOCOLS["styleganv"]) == pytest.approx(0.0, abs=1e-6)


def test_tf1_resize_bilinear_samples_at_target_times_scale():
    image = torch.arange(5 * 7, dtype=torch.float32).reshape(1, 1, 5, 7) ** 1.5
    resized = tf1_resize_bilinear(image, 4)
    for i in range(4):
        for j in range(4):
            y, x = i * 5 / 4, j * 7 / 4  # legacy TF: no half-pixel centres, no corner alignment
            y0, x0 = int(y), int(x)
            y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
            top = image[0, 0, y0, x0] + (image[0, 0, y0, x1] - image[0, 0, y0, x0]) * (x - x0)
            bottom = image[0, 0, y1, x0] + (image[0, 0, y1, x1] - image[0, 0, y1, x0]) * (x - x0)
            assert resized[0, 0, i, j].item() == pytest.approx((top + (bottom - top) * (y - y0)).item(), rel=1e-5)


@pytest.mark.parametrize("name", sorted(FVD_PROTOCOLS))
def test_preprocess_gives_i3d_input_in_protocol_range(name):
    protocol = FVD_PROTOCOLS[name]
    clips = torch.zeros(2, 3, 40, 60, 3, dtype=torch.uint8)
    clips[1] = 255
    video = preprocess_clips(clips, protocol)
    assert video.shape == (2, 3, 3, 224, 224)
    low, high = protocol.input_range
    assert video[0].min().item() == pytest.approx(low) and video[0].max().item() == pytest.approx(low)
    assert video[1].min().item() == pytest.approx(high) and video[1].max().item() == pytest.approx(high)


def test_cache_key_changes_with_every_setting(tmp_path):
    base = dict(i3d_sha256="abc", real_videos="digest", max_real=2048, num_frames=16, frame_stride=1, seed=0)
    reference = statistics_cache_path(tmp_path, statistics_settings(FVD_PROTOCOLS["styleganv"], **base))
    for key, value in [
        ("i3d_sha256", "abd"),
        ("real_videos", "other"),
        ("max_real", 10),
        ("num_frames", 17),
        ("frame_stride", 2),
        ("seed", 1),
    ]:
        changed = statistics_settings(FVD_PROTOCOLS["styleganv"], **{**base, key: value})
        assert statistics_cache_path(tmp_path, changed) != reference, key
    for protocol in ("tf", "tats", "videogpt"):
        assert statistics_cache_path(tmp_path, statistics_settings(FVD_PROTOCOLS[protocol], **base)) != reference
    assert statistics_cache_path(tmp_path, statistics_settings(FVD_PROTOCOLS["styleganv"], **base)) == reference


def test_cached_statistics_computes_once(tmp_path, features):
    real, _ = features
    calls = []

    def compute():
        calls.append(1)
        return real

    settings = {"dataset": "toy"}
    first = cached_statistics(tmp_path, settings, compute, "biased", "float64")
    second = cached_statistics(tmp_path, settings, compute, "biased", "float64")
    assert len(calls) == 1 and first[3] == second[3] and first[3].is_file()
    np.testing.assert_array_equal(first[1], second[1])
    cached_statistics(tmp_path, {"dataset": "other"}, compute, "biased", "float64")
    assert len(calls) == 2
