"""The released Kandinsky 3 image sampler (text-to-image, inpainting), as a diffusers scheduler.

Unlike the video sampler it keeps the 1000-step cosine schedule and strides through it:
    t in 999, 999 - 1000//T, ... (> 0), then 0     the network is told t itself
    x0 = (x_t - sqrt(1-abar_t) eps) / sqrt(abar_t);  x0 <- dynamic threshold (quantile 0.99 t2i, 0.95 inpainting)
    eps <- (x_t - sqrt(abar_t) x0) / sqrt(1-abar_t)   (eps recomputed from the thresholded x0)
    sigma = sqrt(eta (1 - abar_t/abar_s) (1 - abar_s) / (1 - abar_t))      s = the next t
    x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z        no noise when s = 0
eta = 1 is the released default; ``sample_range`` as in :class:`~.released.KandinskyVideoScheduler` (released: 1).
"""

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .released import cosine_betas, dynamic_threshold


@dataclass
class Kandinsky3SchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class Kandinsky3Scheduler(SchedulerMixin, ConfigMixin):
    """Strided ancestral (DDIM with eta) sampling over the 1000-step cosine schedule, as Kandinsky 3 releases it."""

    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, eta: float = 1.0, dynamic_threshold_quantile: float = 0.99,
                 sample_range: float = 1.0):
        if not 0 < dynamic_threshold_quantile <= 1:
            raise ValueError(f"dynamic_threshold_quantile={dynamic_threshold_quantile} must be in (0, 1]")
        if not sample_range > 0:
            raise ValueError(f"sample_range={sample_range} must be > 0 (1.0 for Kandinsky 3.0 latents)")
        self.alphas_cumprod = torch.cumprod(1.0 - cosine_betas(num_train_timesteps), dim=0)
        self.num_inference_steps: int | None = None
        self.timesteps = torch.tensor([])

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        last = self.config.num_train_timesteps - 1
        if not 1 <= num_inference_steps <= last:
            raise ValueError(f"num_inference_steps={num_inference_steps} must be in 1..{last}")
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.arange(last, 0, -(self.config.num_train_timesteps // num_inference_steps), device=device)

    def previous_timestep(self, timestep: int) -> int:
        later = self.timesteps[self.timesteps < timestep]
        return int(later[0]) if len(later) else 0

    def scale_model_input(self, sample: torch.Tensor, timestep: int | torch.Tensor | None = None) -> torch.Tensor:
        return sample

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0) on the 1000-step schedule (image-to-image starts here)."""
        abar = self.alphas_cumprod.to(original.device)[timesteps.long().cpu()].to(original.dtype)
        abar = abar.reshape(-1, *([1] * (original.ndim - 1)))
        return abar.sqrt() * original + (1 - abar).sqrt() * noise

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> Kandinsky3SchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        t, s = int(timestep), self.previous_timestep(int(timestep))
        abar_t, abar_s = (self.alphas_cumprod[i].to(sample.device, sample.dtype) for i in (t, s))
        x0 = dynamic_threshold((sample - (1 - abar_t).sqrt() * model_output) / abar_t.sqrt(),
                               self.config.dynamic_threshold_quantile, self.config.sample_range)
        eps = (sample - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()
        sigma = (self.config.eta * (1 - abar_t / abar_s) * (1 - abar_s) / (1 - abar_t)).sqrt()
        # clamp: sqrt-then-square can round 1 - abar_s - sigma^2 below 0 where the release returns NaN
        prev = abar_s.sqrt() * x0 + (1 - abar_s - sigma**2).clamp(min=0).sqrt() * eps
        if s != 0:
            prev = prev + sigma * randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        if not return_dict:
            return prev, x0
        return Kandinsky3SchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
