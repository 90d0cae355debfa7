import pytest
import torch

from kandinsky_video.testing import tiny_kandinsky3_unet, tiny_pipeline


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny pipeline folder, shared read-only by the command-line and app tests (copy it to change it)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture
def t2i_unet():
    """A tiny text-to-image Kandinsky3UNet whose text projection is the identity (context is pre-projected)."""
    unet = tiny_kandinsky3_unet()
    unet.encoder_hid_proj = torch.nn.Identity()
    return unet


@pytest.fixture
def text():
    """Projected text context (B=2, L=6, D=8) and a mask with padding on the first prompt."""
    generator = torch.Generator().manual_seed(1)
    context = torch.randn(2, 6, 8, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    return context, mask


def per_frame(unet, video: torch.Tensor, timestep, context, mask) -> torch.Tensor:
    """Run an image U-Net on each frame of (B, C, T, H, W) separately: the reference for identity-at-init tests."""
    frames = [
        unet(video[:, :, t], torch.as_tensor(timestep).expand(video.shape[0]), context, mask).sample
        for t in range(video.shape[2])
    ]
    return torch.stack(frames, dim=2)


def plain_config(config) -> dict:
    """A model config as JSON would hold it (tuples as lists, private entries dropped), for equality checks."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items() if not k.startswith("_")}


def fixed_loss(task, batch) -> float:
    """A training task's loss averaged over 8 fixed random draws (t, noise, ...): comparable between weights."""
    losses = []
    with torch.no_grad():
        for seed in range(8):
            torch.manual_seed(seed)
            losses.append(task.loss(task.model, batch))
    return torch.stack(losses).mean().item()
