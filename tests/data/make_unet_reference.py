"""Recipe for tests/data/unet_reference.safetensors: the released Kandinsky Video 1.0 U-Nets at tiny size.

Runs the published code (ai-forever/KandinskyVideo, branch kandinsky_video_1_0; not part of this repository)
with random weights and saves its state dicts, inputs and outputs, so our converter can be checked against the
original math. Usage:

    git clone -b kandinsky_video_1_0 <KandinskyVideo repo> /tmp/kv10
    python tests/data/make_unet_reference.py --original-repo /tmp/kv10
"""

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

TINY = dict(
    model_channels=8, init_channels=4, time_embed_dim=8, context_dim=8, groups=2, head_dim=4, expansion_ratio=4,
    compression_ratio=2, dim_mult=(1, 2, 2, 2), num_blocks=(2, 2, 2, 2), add_cross_attention=(False, True, True, True),
    add_self_attention=(False, True, True, True),
)
NUM_FRAMES, FRAMES_BETWEEN, GROUPS, SIZE, TOKENS = 5, 3, 3, 16, 6


def import_released_unet(repo: Path):
    """Import video_kandinsky3/model/unet.py without its package __init__ (which needs the hub and omegaconf)."""
    package = types.ModuleType("released")
    package.__path__ = [str(repo / "video_kandinsky3" / "model")]
    sys.modules["released"] = package
    for name in ("utils", "nn", "unet"):
        spec = importlib.util.spec_from_file_location(f"released.{name}", repo / "video_kandinsky3" / "model" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"released.{name}"] = module
        spec.loader.exec_module(module)
    return sys.modules["released.unet"].UNet


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Released zero-inits (merges, last temporal convs, conditional norms) get random values too."""
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--original-repo", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("unet_reference.safetensors"))
    args = parser.parse_args()
    UNet = import_released_unet(args.original_repo)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    tensors = {}

    keyframe = UNet(num_channels=4, out_channels=4, num_frames=NUM_FRAMES, **TINY).eval()
    randomize(keyframe, generator)
    batch = 2 * NUM_FRAMES  # a guidance batch: two videos, frames folded (b t)
    x = torch.randn(batch, 4, SIZE, SIZE, generator=generator)
    time = torch.tensor([980] * NUM_FRAMES + [420] * NUM_FRAMES)
    context = torch.randn(2, TOKENS, 8, generator=generator).repeat_interleave(NUM_FRAMES, 0)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool).repeat_interleave(NUM_FRAMES, 0)
    positions = torch.arange(NUM_FRAMES).repeat(2) * 12
    with torch.no_grad():
        out = keyframe(x, time, context, mask, positions)
    tensors.update({f"keyframe.state_dict.{k}": v for k, v in keyframe.state_dict().items()})
    tensors.update({"keyframe.x": x, "keyframe.time": time, "keyframe.context": context, "keyframe.mask": mask,
                    "keyframe.positions": positions, "keyframe.out": out})

    channels = 4
    interpolation = UNet(
        num_channels=channels * (FRAMES_BETWEEN + 2), out_channels=channels * FRAMES_BETWEEN, interpolation=True, **TINY
    ).eval()
    randomize(interpolation, generator)
    batch = 2 * GROUPS
    keyframes = torch.randn(2, GROUPS + 1, channels, SIZE, SIZE, generator=generator)
    noisy = torch.randn(2, GROUPS, channels * FRAMES_BETWEEN, SIZE, SIZE, generator=generator)
    # The released input layout: [left keyframe, k noisy latents (frame-major), right keyframe], groups folded (b g).
    x = torch.cat([keyframes[:, :-1], noisy, keyframes[:, 1:]], dim=2).flatten(0, 1)
    time = torch.tensor([500] * GROUPS + [40] * GROUPS)
    null_embedding = torch.randn(8, generator=generator)
    context = torch.zeros(batch, 2, 8)
    context[:, 0] = null_embedding
    mask = torch.tensor([[True, False]]).repeat(batch, 1)
    skip = torch.tensor([3] * GROUPS + [1] * GROUPS)
    with torch.no_grad():
        out = interpolation(x, time, context, mask, skip_frames=skip, num_temporal_groups=GROUPS)
    tensors.update({f"interpolation.state_dict.{k}": v for k, v in interpolation.state_dict().items()})
    tensors.update({"interpolation.keyframes": keyframes, "interpolation.noisy": noisy, "interpolation.time": time, "interpolation.null_embedding": null_embedding,
                    "interpolation.skip": skip, "interpolation.out": out})

    save_file({k: v.contiguous() for k, v in tensors.items()}, args.output)
    print(f"wrote {args.output} ({sum(v.numel() for v in tensors.values())} numbers)")


if __name__ == "__main__":
    main()
