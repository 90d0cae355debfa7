"""Recipe for ``tests/data/movq_reference.safetensors``: the released Kandinsky Video 1.0 MoVQ, tiny, random weights.

    python tests/data/make_movq_reference.py --original-repo /path/to/KandinskyVideo   # branch kandinsky_video_1_0

It imports the released ``video_kandinsky3/movq.py`` by file path (nothing of it is copied into this repository),
builds its ``MoVQ`` at a tiny size with the real topology (4 levels, x8, attention at the lowest level only),
randomises every weight (spatial-norm convs and norm affines included), and stores:

- ``state_dict.<key>``: its state dict in the published layout (what ``movq.pt`` holds, at tiny size);
- ``input``: 2 seeded frames (2, 3, 32, 32) in [-1, 1];
- ``latents``: ``MoVQ.encode(input)`` (2, 4, 4, 4);
- ``decoded``: ``MoVQ.decode(latents)`` (2, 3, 32, 32), the released decode path (no quantisation).

The generator config is in the file's metadata. All widths are 32 because the released ``Normalize`` hard-codes 32
groups. tests/test_movq_video.py converts the state dict and compares both outputs.
"""

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

# The released constructor arguments, tiny: widths 32 * ch_mult, one res block (two in the decoder), the image is
# 32x32 so the lowest level is 4x4 and attn_resolutions=[4] puts attention there, as [32] does for 256 in the release.
TINY_ORIGINAL_CONFIG = dict(
    double_z=False,
    z_channels=4,
    resolution=32,
    in_channels=3,
    out_ch=3,
    ch=32,
    ch_mult=[1, 1, 1, 1],
    num_res_blocks=1,
    attn_resolutions=[4],
    dropout=0.0,
)
SEED = 0


def import_released_movq(original_repo: Path) -> types.ModuleType:
    """Load video_kandinsky3/movq.py alone: stub its package and its one relative import (``.utils.freeze``)."""
    path = original_repo / "video_kandinsky3" / "movq.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass --original-repo the KandinskyVideo 1.0 checkout")
    package = types.ModuleType("_released_kandinsky_video")
    package.__path__ = []  # a namespace for the relative import, without the package's heavy __init__
    utils = types.ModuleType("_released_kandinsky_video.utils")
    utils.freeze = lambda model: model.requires_grad_(False)
    sys.modules.update({package.__name__: package, utils.__name__: utils})
    spec = importlib.util.spec_from_file_location("_released_kandinsky_video.movq", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Move every weight off its default (norm scales off 1, biases off 0) so no rename can hide behind an init."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim == 1:  # norm affines and biases
                parameter.copy_((1.0 if name.endswith("norm_layer.weight") else 0.0) + 0.1 * noise)
            else:  # keep the default fan-in scale of each conv, plus some noise
                parameter.add_(0.2 * parameter.std() * noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original-repo", type=Path, required=True, help="checkout of KandinskyVideo 1.0")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("movq_reference.safetensors"))
    args = parser.parse_args()

    released = import_released_movq(args.original_repo)
    torch.manual_seed(SEED)
    movq = released.MoVQ(TINY_ORIGINAL_CONFIG).eval()
    generator = torch.Generator().manual_seed(SEED)
    randomize(movq, generator)
    frames = torch.rand((2, 3, 32, 32), generator=generator) * 2 - 1
    with torch.no_grad():
        latents = movq.encode(frames)
        decoded = movq.decode(latents)

    tensors = {f"state_dict.{key}": value.contiguous() for key, value in movq.state_dict().items()}
    tensors.update(input=frames, latents=latents, decoded=decoded)
    metadata = {"generator_config": json.dumps(TINY_ORIGINAL_CONFIG), "seed": str(SEED), "recipe": Path(__file__).name}
    save_file(tensors, args.output, metadata=metadata)
    print(
        f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB): {len(movq.state_dict())} weights, "
        f"latents std {latents.std():.3f}, decoded std {decoded.std():.3f} max |x| {decoded.abs().max():.3f}"
    )


if __name__ == "__main__":
    main()
