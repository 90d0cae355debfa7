"""Depth for the 3D warp: a callable (H, W, 3) image in [0, 1] -> (H, W) float32 depth (1 = the reference plane).

ConstantDepth is the default and needs no download (the original's own fallback): camera translations then become
plain shifts and translation_z a zoom. TransformersDepth runs a monocular depth model (MiDaS/DPT, Depth Anything)
through transformers for parallax.
"""

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

MIN_DEPTH = 1e-3  # a point at or behind the camera would flip its motion and wrap the frame around


class ConstantDepth:
    """Depth 1 everywhere."""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return np.ones(image.shape[:2], dtype=np.float32)


class TransformersDepth:
    """A transformers depth-estimation model (AutoModelForDepthEstimation) from a local folder or a hub id.

    These models predict relative inverse depth (near = large). It becomes the warp's depth the way the original
    converts MiDaS: depth = (offset - prediction) / scale, 50 and 19 by default (set for MiDaS DPT outputs; other
    models may need other values), floored at MIN_DEPTH.
    """

    def __init__(self, model: str | os.PathLike, device: str | torch.device = "cpu", offset: float = 50.0,
                 scale: float = 19.0):
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        source = str(model)
        if not Path(source).exists() and _looks_like_path(model):
            raise FileNotFoundError(f"depth model folder {source} does not exist: give a folder holding config.json, "
                                    "the weights and preprocessor_config.json, or a hub id such as "
                                    "'depth-anything/Depth-Anything-V2-Small-hf'")
        self.processor = AutoImageProcessor.from_pretrained(source)
        self.model = AutoModelForDepthEstimation.from_pretrained(source).to(device).eval()
        self.device, self.offset, self.scale = torch.device(device), offset, scale
        logger.info("depth model %s (%s) on %s", source, type(self.model).__name__, self.device)

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        pixels = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
        inputs = self.processor(images=pixels, return_tensors="pt").to(self.device)
        prediction = self.model(**inputs).predicted_depth.float()  # (1, h, w) at the model's resolution
        prediction = F.interpolate(prediction[:, None], size=image.shape[:2], mode="bicubic", align_corners=False)
        depth = (self.offset - prediction[0, 0].cpu().numpy()) / self.scale
        return np.maximum(depth, MIN_DEPTH).astype(np.float32)


def _looks_like_path(model: str | os.PathLike) -> bool:
    """A hub id is 'name' or 'owner/name'; anything else (a Path, '/x', './x', 'a/b/c', '~/x') is meant as a folder."""
    text = str(model)
    return (isinstance(model, os.PathLike) or text.startswith((".", "/", "~")) or text.count("/") > 1
            or os.sep != "/" and os.sep in text)
