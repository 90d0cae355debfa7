"""CLIPSIM with a tiny random CLIP and a tokenizer built in memory (no downloads)."""

import numpy as np
import pytest
import torch

from kandinsky_video.evaluation.clipsim import CLIPSimilarity, clipsim
from kandinsky_video.evaluation.testing import tiny_clip


@pytest.fixture(scope="module")
def scorer():
    return CLIPSimilarity(*tiny_clip())


@pytest.fixture
def videos():
    rng = np.random.default_rng(0)
    prompts = ["a dog is running on the beach", "a person is playing the piano"]
    return [(rng.integers(0, 256, (3 + i, 40, 56, 3), dtype=np.uint8), prompt) for i, prompt in enumerate(prompts)]


def reference_cosines(scorer: CLIPSimilarity, frames: np.ndarray, prompt: str) -> np.ndarray:
    """Cosines from CLIPModel.forward: logits_per_image / exp(logit_scale)."""
    pixels = scorer.image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
    tokens = scorer.tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        output = scorer.model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels
        )
        return (output.logits_per_image[:, 0] / scorer.model.logit_scale.exp()).double().numpy()


def test_clipsim_is_mean_over_videos_of_mean_frame_cosine(scorer, videos):
    per_video = [reference_cosines(scorer, frames, prompt).mean() for frames, prompt in videos]
    result = clipsim(scorer, videos)
    assert result["value"] == pytest.approx(np.mean(per_video), abs=1e-6)
    assert result["per_video"] == pytest.approx(per_video, abs=1e-6)
    assert result["num_videos"] == 2 and result["num_frames"] == 3 + 4


def test_torchmetrics_convention_is_100_times_clamped_pair_mean(scorer, videos):
    pairs = np.concatenate([reference_cosines(scorer, frames, prompt) for frames, prompt in videos])
    result = clipsim(scorer, videos, torchmetrics_convention=True)
    assert result["value"] == pytest.approx(max(100 * pairs.mean(), 0.0), abs=1e-4)


def test_torchmetrics_convention_clamps_negative_similarity():
    class Anticorrelated:
        def frame_cosines(self, frames, prompt):
            return np.full(len(frames), -0.2)

    frames = np.zeros((2, 8, 8, 3), np.uint8)
    assert clipsim(Anticorrelated(), [(frames, "x")])["value"] == pytest.approx(-0.2)
    assert clipsim(Anticorrelated(), [(frames, "x")], torchmetrics_convention=True)["value"] == 0.0
