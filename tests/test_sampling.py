"""The released sampler port: against the released code on a toy denoiser, and step by step against the formulas."""

import math
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from safetensors.torch import load_file

from kandinsky_video.models.frames import fold_frames, unfold_frames
from kandinsky_video.sampling import KandinskyVideoScheduler, dynamic_threshold
from kandinsky_video.sampling.loop import classifier_free_guidance, denoise_loop, randn_video

DATA = Path(__file__).parent / "data"


def toy_keyframe_model(x, t, text):
    """Same function as tests/data/make_sampler_reference.py, on folded frames; ``text`` is the masked context mean."""
    return 0.8 * torch.tanh(x) + 1e-4 * float(t) + 0.3 * text


def toy_interpolation_model(x, t):
    keyframes = x[:, :4].mean(1, keepdim=True) + x[:, -4:].mean(1, keepdim=True)
    return 0.8 * torch.tanh(x[:, 4:-4]) + 1e-4 * float(t) + 0.2 * keyframes


def test_released_sampler_reproduced_on_a_toy_denoiser():
    reference = load_file(DATA / "sampler_reference.safetensors")
    context, mask, null = reference["context"], reference["mask"], reference["null_embedding"]
    text = ((context * mask[..., None]).sum() / mask.sum()).item()
    null_text = null.sum().item()  # unconditional context [null, 0, ...] with mask [1, 0, ...]

    def keyframe_denoiser(x, t):  # x: (1, 4, T, 8, 8)
        folded = fold_frames(x)
        cond, uncond = toy_keyframe_model(folded, t, text), toy_keyframe_model(folded, t, null_text)
        return unfold_frames(classifier_free_guidance(cond, uncond, 5.0), x.shape[2])

    generator = torch.Generator().manual_seed(0)
    scheduler = KandinskyVideoScheduler()
    keyframes = denoise_loop(scheduler, keyframe_denoiser, randn_video((1, 4, 4, 8, 8), generator, "cpu", torch.float32), 6, generator)
    torch.testing.assert_close(fold_frames(keyframes), reference["keyframes"], atol=1e-5, rtol=1e-5)

    known = reference["keyframes"]  # (N, 4, 8, 8)

    def interpolation_denoiser(x, t):  # x: (1, 12, G, 8, 8)
        folded = fold_frames(x)
        cond = toy_interpolation_model(torch.cat([known[:-1], folded, known[1:]], 1), t)
        zeros = torch.zeros_like(known[:-1])
        uncond = toy_interpolation_model(torch.cat([zeros, folded, zeros], 1), t)
        return unfold_frames(classifier_free_guidance(cond, uncond, 0.25), x.shape[2])

    generator = torch.Generator().manual_seed(0)
    scheduler = KandinskyVideoScheduler(prediction_type="v_prediction")
    between = denoise_loop(scheduler, interpolation_denoiser, randn_video((1, 12, 3, 8, 8), generator, "cpu", torch.float32), 6, generator)
    torch.testing.assert_close(fold_frames(between), reference["between"], atol=1e-5, rtol=1e-5)


def test_step_grid_and_one_step_by_hand():
    scheduler = KandinskyVideoScheduler()
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(980, -1, -20))

    def abar(i):  # the cosine schedule built for 50 steps, from its definition
        f = lambda t: math.cos((t / 50 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return math.prod(1 - min(1 - f(j + 1) / f(j), 0.999) for j in range(i + 1))

    i = 30
    generator = torch.Generator().manual_seed(5)
    sample, eps = torch.randn(2, 4, 8, 8, generator=generator), 0.5 * torch.randn(2, 4, 8, 8, generator=generator)
    out = scheduler.step(eps, i * 20, sample, generator=torch.Generator().manual_seed(9))
    x0 = (sample - math.sqrt(1 - abar(i)) * eps) / math.sqrt(abar(i))
    s = x0.flatten(1).abs().quantile(0.98, dim=1).clamp(min=1).view(-1, 1, 1, 1)
    x0 = x0.clamp(-s, s) / s
    beta, previous = 1 - abar(i) / abar(i - 1), abar(i - 1)
    mean = math.sqrt(previous) * beta / (1 - abar(i)) * x0 + math.sqrt(1 - beta) * (1 - previous) / (1 - abar(i)) * sample
    std = math.sqrt(beta * (1 - previous) / (1 - abar(i)))
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(out.pred_original_sample, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.prev_sample, mean + std * noise, atol=1e-5, rtol=1e-5)
    # The last step adds no noise.
    last = scheduler.step(eps, 0, sample, generator=torch.Generator().manual_seed(9)).prev_sample
    torch.testing.assert_close(last, scheduler.step(eps, 0, sample, generator=torch.Generator().manual_seed(1)).prev_sample)


def test_thresholding_is_per_frame():
    x0 = torch.full((3, 4, 2, 2), 0.5)
    x0[1] *= 10  # only this frame exceeds 1
    out = dynamic_threshold(x0, 0.98)
    torch.testing.assert_close(out[0], x0[0])
    torch.testing.assert_close(out[2], x0[2])
    torch.testing.assert_close(out[1], torch.ones(4, 2, 2))


def test_thresholding_with_a_wider_latent_range():
    """sample_range r: x0 inside [-r, r] is kept (r = 1 would have shrunk it); beyond, it is scaled back to r."""
    x0 = torch.stack([torch.linspace(-1.8, 1.8, 16), torch.linspace(-9.0, 9.0, 16)]).reshape(2, 4, 2, 2)
    out = dynamic_threshold(x0, 1.0, sample_range=2.0)
    torch.testing.assert_close(out[0], x0[0])
    torch.testing.assert_close(out[1], x0[1] * 2.0 / 9.0)
    assert dynamic_threshold(x0, 1.0)[0].abs().max() == 1.0
    with pytest.raises(ValueError, match="sample_range"):
        KandinskyVideoScheduler(sample_range=0.0)


def test_guidance_formula():
    cond, uncond = torch.tensor([2.0]), torch.tensor([1.0])
    assert classifier_free_guidance(cond, uncond, 5.0).item() == 6 * 2 - 5 * 1
    assert classifier_free_guidance(cond, uncond, 0.0).item() == 2.0


@pytest.mark.parametrize("scheduler", [DDIMScheduler(beta_schedule="squaredcos_cap_v2"),
                                       DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2")])
def test_diffusers_schedulers_plug_into_the_same_loop(scheduler):
    seen = []
    latents = denoise_loop(scheduler, lambda x, t: 0.1 * x, torch.randn(1, 4, 3, 8, 8), 5,
                           callback=lambda i, t, x: seen.append((i, int(t), x.shape)))
    assert latents.shape == (1, 4, 3, 8, 8) and torch.isfinite(latents).all()
    assert [i for i, _, _ in seen] == list(range(5))


def test_bad_scheduler_config():
    with pytest.raises(ValueError, match="prediction_type"):
        KandinskyVideoScheduler(prediction_type="sample")
    with pytest.raises(ValueError, match="set_timesteps"):
        KandinskyVideoScheduler().step(torch.zeros(1, 4, 2, 2), 0, torch.zeros(1, 4, 2, 2))
