"""Colour coherence: histogram-match each warped frame to frame 0, so colours do not drift over hundreds of img2img
passes. Plain numpy (no scikit-image); images are (H, W, 3) floats in [0, 1].
"""

import numpy as np

# sRGB (D65) <-> CIE XYZ
RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
XYZ_TO_RGB = np.linalg.inv(RGB_TO_XYZ)
WHITE = RGB_TO_XYZ.sum(axis=1)  # the XYZ of RGB (1, 1, 1)


class ColorMatcher:
    """Histogram matching to a fixed reference, channel by channel in RGB, HSV or LAB.

    As skimage's match_histograms: each value goes to the reference value at the same quantile. The reference's
    quantiles are computed once, since frame 0 never changes.
    """

    def __init__(self, reference: np.ndarray, space: str):
        spaces = {"RGB": (_identity, _identity), "HSV": (rgb_to_hsv, hsv_to_rgb), "LAB": (rgb_to_lab, lab_to_rgb)}
        if space not in spaces:
            raise ValueError(f"colour space must be one of {tuple(spaces)}, got {space!r}")
        self.to_space, self.from_space = spaces[space]
        converted = self.to_space(reference)
        self.references = [_quantiles(converted[..., channel].ravel())[:2] for channel in range(converted.shape[-1])]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        converted = self.to_space(image)
        matched = np.empty(converted.shape, dtype=np.float64)
        for channel, (reference_values, reference_quantiles) in enumerate(self.references):
            values, quantiles, inverse = _quantiles(converted[..., channel].ravel())
            mapped = np.interp(quantiles, reference_quantiles, reference_values)
            matched[..., channel] = mapped[inverse].reshape(converted.shape[:-1])
        return np.clip(self.from_space(matched), 0.0, 1.0).astype(np.float32)


def _quantiles(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values, the share of all values at or below each, and each value's index into the distinct ones."""
    distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return distinct, np.cumsum(counts) / values.size, inverse.ravel()


def _identity(image: np.ndarray) -> np.ndarray:
    return image


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> HSV, all three in [0, 1] (hue 0 for greys)."""
    r, g, b = np.moveaxis(rgb, -1, 0)
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    spread = high - low
    safe = np.where(spread > 0, spread, 1.0)
    hue = np.select([high == r, high == g], [(g - b) / safe, 2.0 + (b - r) / safe], 4.0 + (r - g) / safe)
    hue = np.where(spread > 0, (hue / 6.0) % 1.0, 0.0)
    saturation = np.where(high > 0, spread / np.where(high > 0, high, 1.0), 0.0)
    return np.stack([hue, saturation, high], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    hue, saturation, value = np.moveaxis(hsv, -1, 0)
    sector = np.floor(hue * 6.0)
    fraction = hue * 6.0 - sector
    p, q, t = value * (1 - saturation), value * (1 - saturation * fraction), value * (1 - saturation * (1 - fraction))
    sector = sector.astype(int) % 6
    channels = [[value, q, p, p, t, value], [t, value, value, q, p, p], [p, p, t, value, value, q]]
    return np.stack([np.choose(sector, choices) for choices in channels], axis=-1)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in [0, 1] -> CIE L*a*b* (D65), L in [0, 100]."""
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ RGB_TO_XYZ.T / WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = np.moveaxis(f, -1, 0)
    return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    lightness, a, b = np.moveaxis(lab, -1, 0)
    fy = (lightness + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * WHITE
    linear = np.clip(xyz @ XYZ_TO_RGB.T, 0.0, 1.0)
    return np.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)
