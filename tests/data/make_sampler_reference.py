"""Recipe for tests/data/sampler_reference.safetensors: the released Kandinsky Video 1.0 sampler on a toy denoiser.

Runs the published BaseDiffusion (ai-forever/KandinskyVideo, branch kandinsky_video_1_0; not part of this
repository) for a few steps with classifier-free guidance, the null-embedding unconditional context, dynamic
thresholding, epsilon (keyframes) and v prediction with zeroed keyframes (interpolation). The toy denoiser is also
defined in tests/test_sampling.py. Usage:

    python tests/data/make_sampler_reference.py --original-repo /tmp/kv10
"""

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

STEPS, FRAMES, TOKENS, DIM = 6, 4, 5, 8


def import_released_diffusion(repo: Path):
    package = types.ModuleType("released")
    package.__path__ = [str(repo / "video_kandinsky3" / "model")]
    sys.modules["released"] = package
    for name in ("utils", "diffusion"):
        spec = importlib.util.spec_from_file_location(f"released.{name}", repo / "video_kandinsky3" / "model" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"released.{name}"] = module
        spec.loader.exec_module(module)
    return sys.modules["released.diffusion"]


def toy_keyframe_model(x, t, context, mask, *unused):
    """A deterministic stand-in for the U-Net: depends on the sample, the time and the (masked) context."""
    text = (context * mask[..., None]).sum(dim=(1, 2)) / mask.sum(1)
    return 0.8 * torch.tanh(x) + 1e-4 * t.float().view(-1, 1, 1, 1) + 0.3 * text.view(-1, 1, 1, 1)


def toy_interpolation_model(x, t, context, mask, *unused):
    keyframes = x[:, :4].mean(1, keepdim=True) + x[:, -4:].mean(1, keepdim=True)
    return 0.8 * torch.tanh(x[:, 4:-4]) + 1e-4 * t.float().view(-1, 1, 1, 1) + 0.2 * keyframes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--original-repo", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("sampler_reference.safetensors"))
    args = parser.parse_args()
    released = import_released_diffusion(args.original_repo)
    diffusion = released.BaseDiffusion(released.get_named_beta_schedule("cosine", STEPS), 0.98)

    generator = torch.Generator().manual_seed(1)
    context = torch.randn(1, TOKENS, DIM, generator=generator).repeat(FRAMES, 1, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0]]).repeat(FRAMES, 1)
    null_embedding = torch.randn(DIM, generator=generator)
    torch.manual_seed(0)
    keyframes = diffusion.p_sample_loop(
        toy_keyframe_model, (FRAMES, 4, 8, 8), "cpu", context, mask, null_embedding, 5.0,
        temporal_positions=torch.arange(FRAMES) * 12,
    )

    groups = FRAMES - 1
    null_context = torch.zeros(groups, 2, DIM)
    null_context[:, 0] = null_embedding
    null_mask = torch.tensor([[1, 0]]).repeat(groups, 1)
    torch.manual_seed(0)
    between = diffusion.p_sample_loop(
        toy_interpolation_model, (groups, 12, 8, 8), "cpu", null_context, null_mask, null_embedding, 0.25,
        base_frames=(keyframes[:-1], keyframes[1:]), num_temporal_groups=groups,
        skip_frames=torch.full((groups,), 3), v_predication=True,
    )
    save_file({"context": context[:1].contiguous(), "mask": mask[:1].contiguous(), "null_embedding": null_embedding,
               "keyframes": keyframes.contiguous(), "between": between.contiguous()}, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
