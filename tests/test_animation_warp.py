import math

import numpy as np
import pytest
import torch

from kandinsky_video.animation import ConstantDepth, TransformersDepth, motion_matrix_2d, warp_2d, warp_3d
from kandinsky_video.animation.depth import MIN_DEPTH

HEIGHT, WIDTH = 48, 64
# Bicubic resampling at whole-pixel offsets is exact, so shifts compare to float precision.
ATOL = 1e-5


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).random((HEIGHT, WIDTH, 3), dtype=np.float32)


def flat_depth() -> np.ndarray:
    return np.ones((HEIGHT, WIDTH), dtype=np.float32)


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Content moved right by dx and down by dy (np.roll; compare away from the edges)."""
    return np.roll(image, (dy, dx), axis=(0, 1))


def bright_spot(x: int, y: int) -> np.ndarray:
    spot = np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32)
    spot[y - 1:y + 2, x - 1:x + 2] = 1.0
    return spot


def centroid(image: np.ndarray) -> np.ndarray:
    weights = image[..., 0]
    y, x = np.mgrid[:HEIGHT, :WIDTH]
    return np.array([(weights * x).sum(), (weights * y).sum()]) / weights.sum()


def test_identity_motion_leaves_the_frame_unchanged(image):
    for border in ("replicate", "wrap"):
        np.testing.assert_allclose(warp_2d(image, motion_matrix_2d(WIDTH, HEIGHT), border), image, atol=ATOL)
    perspective = motion_matrix_2d(WIDTH, HEIGHT, perspective=(0.0, 0.0, 0.0, 56.0))
    np.testing.assert_allclose(warp_2d(image, perspective), image, atol=ATOL)
    np.testing.assert_allclose(warp_3d(image, flat_depth(), (0, 0, 0), (0, 0, 0)), image, atol=ATOL)


def test_2d_translation_is_a_shift(image):
    warped = warp_2d(image, motion_matrix_2d(WIDTH, HEIGHT, translation_x=3, translation_y=-2))
    np.testing.assert_allclose(warped[4:-4, 4:-4], shifted(image, 3, -2)[4:-4, 4:-4], atol=ATOL)
    wrapped = warp_2d(image, motion_matrix_2d(WIDTH, HEIGHT, translation_x=3, translation_y=-2), border="wrap")
    np.testing.assert_allclose(wrapped, shifted(image, 3, -2), atol=ATOL)  # wrap: exact everywhere, seams included


def test_2d_translation_survives_the_perspective_option(image):
    """Regression for Deforum's np.matmul(P, R, T), which passes T as the output buffer and drops the translation."""
    level = motion_matrix_2d(WIDTH, HEIGHT, translation_x=5, translation_y=2, perspective=(0.0, 0.0, 0.0, 56.0))
    warped = warp_2d(image, level)
    np.testing.assert_allclose(warped[4:-4, 6:-6], shifted(image, 5, 2)[4:-4, 6:-6], atol=ATOL)
    # With a real tilt: translating then tilting in one warp equals shifting first and tilting the shifted frame.
    tilt = (0.0, 12.0, -8.0, 56.0)
    both = warp_2d(image, motion_matrix_2d(WIDTH, HEIGHT, translation_x=5, perspective=tilt))
    tilted_only = warp_2d(shifted(image, 5, 0), motion_matrix_2d(WIDTH, HEIGHT, perspective=tilt))
    np.testing.assert_allclose(both[8:-8, 10:-10], tilted_only[8:-8, 10:-10], atol=1e-4)
    assert np.abs(both - warp_2d(image, motion_matrix_2d(WIDTH, HEIGHT, perspective=tilt))).mean() > 0.1


def test_zoom_above_one_moves_off_centre_content_outward():
    spot, centre = bright_spot(44, 34), np.array([(WIDTH - 1) / 2, (HEIGHT - 1) / 2])
    zoomed = warp_2d(spot, motion_matrix_2d(WIDTH, HEIGHT, zoom=1.25))
    np.testing.assert_allclose(centroid(zoomed), centre + 1.25 * (centroid(spot) - centre), atol=0.05)
    # The 3D camera moving forward (+z) with flat depth zooms in too.
    forward = warp_3d(spot, flat_depth(), (0.0, 0.0, 20.0), (0.0, 0.0, 0.0))
    assert np.linalg.norm(centroid(forward) - centre) > np.linalg.norm(centroid(spot) - centre) + 1.0


def test_3d_translation_with_constant_depth_is_the_2d_shift(image):
    # At depth 1 a camera step of tx moves content by tx / 200 / tan(fov / 2) in [-1, 1] units: pick 4 px and 2 px.
    tan_half = math.tan(math.radians(40.0) / 2)
    tx, ty = 4 * (2 / WIDTH) * 200 * tan_half, 2 * (2 / HEIGHT) * 200 * tan_half
    warped = warp_3d(image, flat_depth(), (tx, ty, 0.0), (0.0, 0.0, 0.0), fov=40.0)
    # Camera right (+tx) moves content left; camera up (+ty) moves content down.
    two_d = warp_2d(image, motion_matrix_2d(WIDTH, HEIGHT, translation_x=-4, translation_y=2))
    np.testing.assert_allclose(warped[4:-4, 6:-6], two_d[4:-4, 6:-6], atol=ATOL)
    np.testing.assert_allclose(warped[4:-4, 6:-6], shifted(image, -4, 2)[4:-4, 6:-6], atol=ATOL)


def test_depth_model_path_that_does_not_exist_is_a_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TransformersDepth(tmp_path / "no-such-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TransformersDepth("./models/dpt-hybrid-midas")


def test_transformers_depth_runs_a_tiny_dpt_from_a_folder(tmp_path, image):
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32,
                       patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 8, 8],
                       fusion_hidden_size=8)
    DPTForDepthEstimation(config).save_pretrained(tmp_path)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)

    depth = TransformersDepth(tmp_path)(image)
    assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and depth.min() >= MIN_DEPTH
    assert warp_3d(image, depth, (5.0, 0.0, 5.0), (0.0, 1.0, 0.0)).shape == image.shape
    np.testing.assert_array_equal(ConstantDepth()(image), flat_depth())
