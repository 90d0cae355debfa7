"""Anti-blur: the unsharp mask that counters the softening each warp and img2img pass adds. (H, W, 3) in [0, 1]."""

import numpy as np


def gaussian_blur(image: np.ndarray, kernel_size: int, sigma: float) -> np.ndarray:
    """OpenCV's GaussianBlur with its default border (reflect without repeating the edge pixel), separably.

    Shifted sums in numpy: ten times faster than torch's grouped conv2d on a CPU for a 5-tap kernel.
    """
    offsets = np.arange(kernel_size) - (kernel_size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2)).astype(np.float32)
    kernel /= kernel.sum()
    along_x = _filter_rows(image, kernel)
    return _filter_rows(along_x.swapaxes(0, 1), kernel).swapaxes(0, 1)


def _filter_rows(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve (H, W, C) along W with an odd, symmetric kernel."""
    half, width = len(kernel) // 2, image.shape[1]
    padded = np.pad(image, ((0, 0), (half, half), (0, 0)), mode="reflect")  # numpy's reflect = OpenCV's reflect-101
    return sum(weight * padded[:, index:index + width] for index, weight in enumerate(kernel))


def unsharp_mask(image: np.ndarray, kernel_size: int = 5, sigma: float = 1.0, amount: float = 0.2,
                 threshold: float = 0.0) -> np.ndarray:
    """(amount + 1) * image - amount * blur(image), clipped; where |image - blur| < threshold / 255 it is left alone."""
    if amount == 0:
        return image
    blurred = gaussian_blur(image, kernel_size, sigma)
    sharpened = np.clip((amount + 1) * image - amount * blurred, 0.0, 1.0)
    if threshold > 0:
        sharpened = np.where(np.abs(image - blurred) < threshold / 255, image, sharpened)
    return sharpened.astype(np.float32)
