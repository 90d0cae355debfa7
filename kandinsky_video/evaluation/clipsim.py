"""CLIPSIM: cosine between CLIP embeddings of each frame and of the prompt, averaged over frames, then videos.

Papers report the raw cosine (0.24-0.32 for real models) with ViT-B/32 (``openai/clip-vit-base-patch32``), the
default. ``torchmetrics_convention=True`` gives torchmetrics' CLIPScore instead: 100 * max(mean over every
frame-prompt pair, 0); it is not comparable with the raw numbers (and torchmetrics defaults to ViT-L/14).
"""

import logging
from collections.abc import Iterable

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

logger = logging.getLogger(__name__)

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class CLIPSimilarity:
    """Per-frame CLIP cosines of a video against its prompt; standard CLIP preprocessing of each frame.

    ``model`` is a transformers ``CLIPModel``; ``image_processor`` resizes the shorter side (bicubic), centre-crops
    and normalises with CLIP's mean/std.
    """

    def __init__(self, model: CLIPModel, tokenizer, image_processor, device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.tokenizer, self.image_processor, self.device = tokenizer, image_processor, torch.device(device)

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_CLIP, device: str | torch.device = "cpu") -> "CLIPSimilarity":
        """Any transformers CLIP checkpoint: a hub id or a local folder."""
        model = CLIPModel.from_pretrained(name_or_path)
        return cls(
            model, AutoTokenizer.from_pretrained(name_or_path), AutoImageProcessor.from_pretrained(name_or_path), device
        )

    @torch.inference_mode()
    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        """(P, D) unit-norm projected text embeddings; prompts longer than CLIP's context are truncated."""
        tokens = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        pooled = self.model.text_model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).pooler_output
        return torch.nn.functional.normalize(self.model.text_projection(pooled), dim=-1)

    @torch.inference_mode()
    def frame_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        """(T, D) unit-norm projected image embeddings of uint8 (T, H, W, 3) frames."""
        pixels = self.image_processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return torch.nn.functional.normalize(self.model.visual_projection(pooled), dim=-1)

    def frame_cosines(self, frames: np.ndarray, prompt: str) -> np.ndarray:
        """(T,) cosine of each frame with the prompt."""
        return (self.frame_embeddings(frames) @ self.text_embeddings([prompt])[0]).double().cpu().numpy()


def clipsim(
    scorer: CLIPSimilarity, videos: Iterable[tuple[np.ndarray, str]], torchmetrics_convention: bool = False
) -> dict:
    """CLIPSIM of (frames, prompt) pairs: ``value`` plus the per-video means and how they were combined."""
    per_video, pair_sum, pair_count = [], 0.0, 0
    for frames, prompt in videos:
        cosines = scorer.frame_cosines(frames, prompt)
        per_video.append(float(cosines.mean()))
        pair_sum, pair_count = pair_sum + float(cosines.sum()), pair_count + len(cosines)
        if len(per_video) % 100 == 0:
            logger.info("CLIPSIM: %d videos", len(per_video))
    if not per_video:
        raise ValueError("no videos to compute CLIPSIM on")
    if torchmetrics_convention:
        value, convention = max(100.0 * pair_sum / pair_count, 0.0), "torchmetrics: 100 * max(mean pair cosine, 0)"
    else:
        value, convention = float(np.mean(per_video)), "mean over videos of the mean frame-prompt cosine"
    return {
        "value": value,
        "convention": convention,
        "num_videos": len(per_video),
        "num_frames": pair_count,
        "per_video": per_video,
    }
