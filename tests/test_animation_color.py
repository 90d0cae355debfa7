import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kandinsky_video.animation.color import ColorMatcher, hsv_to_rgb, lab_to_rgb, rgb_to_hsv, rgb_to_lab
from kandinsky_video.animation.filters import gaussian_blur, unsharp_mask


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).random((24, 32, 3), dtype=np.float32)


def test_colour_spaces_round_trip(image):
    np.testing.assert_allclose(hsv_to_rgb(rgb_to_hsv(image)), image, atol=1e-5)
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(image)), image, atol=1e-5)
    white_lab = rgb_to_lab(np.ones((1, 3)))[0]
    np.testing.assert_allclose(white_lab, [100, 0, 0], atol=1e-4)


@pytest.mark.parametrize("space", ["RGB", "HSV", "LAB"])
def test_colour_coherence_pulls_a_drifted_frame_back_to_frame_0(image, space):
    match = ColorMatcher(image, space)
    np.testing.assert_allclose(match(image), image, atol=1e-4)
    drifted = np.clip(image * [1.0, 0.8, 0.6] + [0.0, 0.1, 0.3], 0, 1).astype(np.float32)  # a blue cast
    restored = match(drifted)
    assert np.abs(restored.mean((0, 1)) - image.mean((0, 1))).max() < 0.25 * np.abs(
        drifted.mean((0, 1)) - image.mean((0, 1))).max()


def test_unsharp_mask_is_the_reference_formula(image):
    # OpenCV's GaussianBlur default border is reflect-101 (torch's "reflect"); build the 5x5 kernel directly.
    offsets = np.arange(5) - 2
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None] ** 2) / 2.0)
    kernel = torch.tensor(kernel / kernel.sum(), dtype=torch.float32).repeat(3, 1, 1, 1)
    pixels = F.pad(torch.from_numpy(image).permute(2, 0, 1)[None], (2, 2, 2, 2), mode="reflect")
    blurred = F.conv2d(pixels, kernel, groups=3)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(gaussian_blur(image, 5, 1.0), blurred, atol=1e-6)
    np.testing.assert_allclose(unsharp_mask(image, 5, 1.0, 0.2), np.clip(1.2 * image - 0.2 * blurred, 0, 1), atol=1e-6)
    assert unsharp_mask(image, amount=0.0) is image
