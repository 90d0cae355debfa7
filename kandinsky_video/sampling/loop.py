"""The denoising loop shared by every stage and every scheduler (released port or diffusers')."""

from collections.abc import Callable

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..models.frames import fold_frames, unfold_frames

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, C, T, H, W), model timestep) -> output
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]  # (step index, timestep, latents)


def randn_video(
    shape: tuple[int, int, int, int, int], generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Gaussian (B, C, T, H, W) drawn in the released layout, frames folded: (B*T, C, H, W) in memory order."""
    batch, channels, frames, height, width = shape
    noise = randn_tensor((batch * frames, channels, height, width), generator=generator, device=device, dtype=dtype)
    return unfold_frames(noise, frames)


def classifier_free_guidance(conditional: torch.Tensor, unconditional: torch.Tensor, weight: float) -> torch.Tensor:
    """The released formula (1 + w) * cond - w * uncond; w = 0 is the conditional model alone."""
    return (1.0 + weight) * conditional - weight * unconditional


def denoise_loop(
    scheduler,
    denoiser: Denoiser,
    latents: torch.Tensor,
    num_inference_steps: int,
    generator: torch.Generator | None = None,
    progress_bar=None,
    callback: StepCallback | None = None,
    start_step: int = 0,
) -> torch.Tensor:
    """Run ``scheduler`` from ``latents`` (B, C, T, H, W); steps see folded frames, so per-element rules
    (dynamic thresholding, noise) act per frame or per interpolation group, as in the release.

    ``start_step`` > 0 skips the noisiest steps (image-to-image): ``latents`` must then already be noised to
    ``scheduler.timesteps[start_step]`` (see :func:`schedule_start`).
    """
    scheduler.set_timesteps(num_inference_steps, device=latents.device)
    if start_step == 0:
        latents = latents * getattr(scheduler, "init_noise_sigma", 1.0)
    frames = latents.shape[2]
    for index, timestep in enumerate(scheduler.timesteps[start_step:]):
        model_input = unfold_frames(scheduler.scale_model_input(fold_frames(latents), timestep), frames)
        output = denoiser(model_input, timestep)
        latents = scheduler.step(fold_frames(output), timestep, fold_frames(latents), generator=generator).prev_sample
        latents = unfold_frames(latents, frames)
        if callback is not None:
            callback(index, timestep, latents)
        if progress_bar is not None:
            progress_bar.update()
    return latents


def schedule_start(scheduler, num_inference_steps: int, strength: float) -> tuple[int, torch.Tensor]:
    """diffusers' strength rule: re-run the last ``round(steps * strength)`` steps; returns (start step, its time)."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength={strength} must be in (0, 1]: the fraction of the schedule that is re-run")
    scheduler.set_timesteps(num_inference_steps)
    start = num_inference_steps - max(1, min(num_inference_steps, int(num_inference_steps * strength)))
    return start, scheduler.timesteps[start]
