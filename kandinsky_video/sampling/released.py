"""The released Kandinsky Video 1.0 sampler, as a diffusers scheduler so it and diffusers' own plug in alike.

Notation (paper / released code -> here):
    T = num_inference_steps          the cosine schedule is built for T steps, not for 1000
    i in T-1 ... 0                   step index; the network is told t = i * (1000 // T)  (980, 960, ..., 0)
    abar_i                           alphas_cumprod[i] = prod_{j<=i} (1 - beta_j)
    x0 = (x_i - sqrt(1-abar_i) eps) / sqrt(abar_i)            epsilon prediction (keyframes)
    x0 = sqrt(abar_i) x_i - sqrt(1-abar_i) v                  v prediction (interpolation)
    x0 <- clip(x0, -s, s) / s,  s = max(1, quantile_q(|x0|))  dynamic thresholding per batch element
                                                              (generalised: s = max(r, ...), x0 * r / s for a
                                                              latent range r; released r = 1)
    x_{i-1} = c1_i x0 + c2_i x_i + exp(0.5 log var_i) z       ancestral posterior; no noise at i = 0

The pipeline calls ``step`` on folded tensors, so a batch element is one frame (keyframes) or one interpolation
group (interpolation), exactly as in the release.
"""

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

PREDICTION_TYPES = ("epsilon", "v_prediction")


def cosine_betas(steps: int) -> torch.Tensor:
    """alpha_bar(t) = cos^2(((t/steps + 0.008) / 1.008) * pi/2); beta_i = min(1 - abar(i+1)/abar(i), 0.999)."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)]
    return torch.tensor(betas, dtype=torch.float32)  # float32 like the release: every later product rounds alike


def dynamic_threshold(x0: torch.Tensor, quantile: float, sample_range: float = 1.0) -> torch.Tensor:
    """Per batch element: s = max(r, quantile(|x0|)); x0 -> clip(x0, -s, s) * r / s  (released: r = 1)."""
    s = torch.quantile(x0.flatten(1).abs().float(), quantile, dim=1).clamp(min=sample_range).to(x0.dtype)
    s = s.reshape(-1, *([1] * (x0.ndim - 1)))
    return torch.maximum(torch.minimum(x0, s), -s) * (sample_range / s)


@dataclass
class ReleasedSchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class KandinskyVideoScheduler(SchedulerMixin, ConfigMixin):
    """Ancestral DDPM with the released step grid, cosine schedule and per-element dynamic thresholding.

    ``sample_range`` is the range latents lie in: thresholding only shrinks a predicted x0 whose quantile exceeds
    it. 1.0 as released (Kandinsky 3.0's MoVQ); a model whose latents reach further (the demo's MoVQ: ~2) needs more,
    or thresholding would dim every image.
    """

    order = 1
    _per_step = ("sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "mean_x0", "mean_xt", "log_variance")

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        prediction_type: str = "epsilon",
        dynamic_threshold_quantile: float = 0.98,
        sample_range: float = 1.0,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type={prediction_type!r}; choose one of {PREDICTION_TYPES}")
        if not 0 < dynamic_threshold_quantile <= 1:
            raise ValueError(f"dynamic_threshold_quantile={dynamic_threshold_quantile} must be in (0, 1]")
        if not sample_range > 0:
            raise ValueError(f"sample_range={sample_range} must be > 0 (1.0 for Kandinsky 3.0 latents)")
        self.num_inference_steps: int | None = None
        self.timesteps = torch.tensor([])

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        if not 1 <= num_inference_steps <= self.config.num_train_timesteps:
            raise ValueError(f"num_inference_steps={num_inference_steps} must be in 1..{self.config.num_train_timesteps}")
        betas = cosine_betas(num_inference_steps)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        previous = torch.cat([torch.ones(1), alphas_cumprod[:-1]])
        variance = betas * (1.0 - previous) / (1.0 - alphas_cumprod)
        self.num_inference_steps = num_inference_steps
        self.time_scale = self.config.num_train_timesteps // num_inference_steps
        self.alphas_cumprod = alphas_cumprod
        self.sqrt_alphas_cumprod = alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - alphas_cumprod).sqrt()
        self.mean_x0 = previous.sqrt() * betas / (1.0 - alphas_cumprod)  # c1
        self.mean_xt = (1.0 - betas).sqrt() * (1.0 - previous) / (1.0 - alphas_cumprod)  # c2
        # variance[0] = 0: the release reuses [1] there (with one step there is no [1], and step 0 adds no noise)
        self.log_variance = torch.log(torch.cat([variance[1:2] if num_inference_steps > 1 else variance[:1], variance[1:]]))
        self.timesteps = (torch.arange(num_inference_steps - 1, -1, -1) * self.time_scale).to(device)

    def scale_model_input(self, sample: torch.Tensor, timestep: int | torch.Tensor | None = None) -> torch.Tensor:
        return sample

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> ReleasedSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One ancestral step on (N, ...) tensors; thresholding treats each of the N elements separately."""
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        i = int(timestep) // self.time_scale
        coefficient = {name: getattr(self, name)[i].to(sample.device, sample.dtype) for name in self._per_step}
        if self.config.prediction_type == "epsilon":
            x0 = (sample - coefficient["sqrt_one_minus_alphas_cumprod"] * model_output) / coefficient["sqrt_alphas_cumprod"]
        else:
            x0 = coefficient["sqrt_alphas_cumprod"] * sample - coefficient["sqrt_one_minus_alphas_cumprod"] * model_output
        x0 = dynamic_threshold(x0, self.config.dynamic_threshold_quantile, self.config.sample_range)
        prev = coefficient["mean_x0"] * x0 + coefficient["mean_xt"] * sample
        if i > 0:
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            prev = prev + torch.exp(0.5 * coefficient["log_variance"]) * noise
        if not return_dict:
            return prev, x0
        return ReleasedSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
