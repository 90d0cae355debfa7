"""Recipe for tests/data/kandinsky3_reference.safetensors: the released Kandinsky 3 inpainting U-Net and sampler.

Runs the published Kandinsky 3 code (ai-forever/Kandinsky-3: kandinsky3/model/{unet,nn,utils,diffusion}.py; not part
of this repository) at tiny size with random weights: a 9-channel inpainting U-Net forward, and the image sampler
(1000-step cosine schedule strided, eta, dynamic thresholding) on a toy denoiser with and without the inpainting
channels. Usage:

    python tests/data/make_kandinsky3_reference.py --original-repo /path/to/Kandinsky-3
"""

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

TINY = dict(model_channels=8, init_channels=4, time_embed_dim=8, context_dim=8, groups=2, head_dim=4,
            expansion_ratio=4, compression_ratio=2, dim_mult=(1, 2, 2, 2), num_blocks=(2, 2, 2, 2),
            add_cross_attention=(False, True, True, True), add_self_attention=(False, True, True, True))


def import_released(repo: Path):
    package = types.ModuleType("released3")
    package.__path__ = [str(repo / "kandinsky3" / "model")]
    sys.modules["released3"] = package
    for name in ("utils", "nn", "unet", "diffusion"):
        spec = importlib.util.spec_from_file_location(f"released3.{name}", repo / "kandinsky3" / "model" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"released3.{name}"] = module
        spec.loader.exec_module(module)
    return sys.modules["released3.unet"], sys.modules["released3.diffusion"]


class Toy(torch.nn.Module):
    """A stand-in denoiser: 4 or 9 input channels (the sampler checks in_layer.in_channels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.in_layer = torch.nn.Conv2d(channels, 4, 1)

    def forward(self, x, t, context, mask):
        text = (context * mask[..., None]).sum(dim=(1, 2)) / mask.sum(1)
        extra = x[:, 4:].mean(1, keepdim=True) if x.shape[1] > 4 else 0
        return 0.8 * torch.tanh(x[:, :4]) + 1e-4 * t.view(-1, 1, 1, 1) + 0.3 * text.view(-1, 1, 1, 1) + 0.2 * extra


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--original-repo", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("kandinsky3_reference.safetensors"))
    args = parser.parse_args()
    unet_module, diffusion = import_released(args.original_repo)
    generator = torch.Generator().manual_seed(0)
    tensors = {}

    unet = unet_module.UNet(num_channels=9, out_channels=4, **TINY).eval()
    with torch.no_grad():
        for parameter in unet.parameters():
            if not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    x = torch.randn(2, 9, 16, 16, generator=generator)
    time = torch.tensor([700.0, 30.0])
    context = torch.randn(2, 5, 8, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        out = unet(x, time, context, mask)
    tensors.update({f"inpaint.state_dict.{k}": v for k, v in unet.state_dict().items()})
    tensors.update({"inpaint.x": x, "inpaint.time": time, "inpaint.context": context, "inpaint.mask": mask,
                    "inpaint.out": out})

    base = diffusion.BaseDiffusion(diffusion.get_named_beta_schedule("cosine", 1000), percentile=0.99)
    steps = 10
    times = list(range(999, 0, -1000 // steps))
    context = torch.randn(1, 5, 8, generator=generator)
    text_mask = torch.tensor([[1, 1, 1, 0, 0]])
    null_embedding = torch.randn(8, generator=generator)
    toy_t2i, toy_inpaint = Toy(4), Toy(9)  # built before seeding: their init must not consume the sampler's noise
    torch.manual_seed(0)
    image = base.p_sample_loop(toy_t2i, (1, 4, 8, 8), times, "cpu", context, text_mask, null_embedding, 3.0, 1.0)
    keep = (torch.rand(1, 1, 8, 8, generator=generator) > 0.5).float()
    masked_latent = torch.randn(1, 4, 8, 8, generator=generator)
    torch.manual_seed(0)
    inpainted = base.p_sample_loop(toy_inpaint, (1, 4, 8, 8), times, "cpu", context, text_mask, null_embedding, 4.0, 1.0,
                                   mask=keep, masked_latent=masked_latent)
    tensors.update({"sampler.context": context, "sampler.mask": text_mask, "sampler.null_embedding": null_embedding,
                    "sampler.image": image, "sampler.keep": keep, "sampler.masked_latent": masked_latent,
                    "sampler.inpainted": inpainted})
    save_file({k: v.contiguous() for k, v in tensors.items()}, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
