"""LPIPS (Zhang et al. 2018, the ``lpips`` package v0.1) as a frozen perceptual loss, without torchvision.

No weights ship with this package: the user's file holds both the backbone (VGG16 or AlexNet ``features``) and the
learned linear layers, in the state-dict layout of ``lpips.LPIPS(net=...)``:

- ``net.slice{1..5}.{i}.weight`` / ``.bias``: the backbone convolutions, ``i`` their index in torchvision's
  ``vgg16().features`` (0, 2 | 5, 7 | 10, 12, 14 | 17, 19, 21 | 24, 26, 28) or ``alexnet().features``
  (0 | 3 | 6 | 8 | 10);
- ``lin{0..4}.model.1.weight``: the 1x1 convolutions (1, C_k, 1, 1) weighting each layer's squared feature
  differences (C = 64, 128, 256, 512, 512 for VGG; 64, 192, 384, 256, 256 for AlexNet).

``scaling_layer.*`` and ``lins.*`` (duplicates ``lpips`` keeps in its state dict) are accepted and ignored. With the
``lpips`` package installed somewhere, ``torch.save(lpips.LPIPS(net="vgg").state_dict(), "lpips_vgg.pth")`` writes
such a file (``.pth``/``.pt`` read with ``weights_only=True``, or ``.safetensors``).

distance(x0, x1) = sum_k mean_hw( lin_k( (n(f_k(x0)) - n(f_k(x1)))^2 ) ), n = division by the channel-wise L2 norm.
"""

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..convert.common import CheckpointMismatchError, check_state_dict

# Per backbone: the layers of torchvision's ``features`` (("conv", in, out, kernel, stride, padding) | ("relu",) |
# ("pool", kernel, stride)) and the index after which each of the five slices ends.
BACKBONES = {
    "vgg": (
        [("conv", 3, 64, 3, 1, 1), ("relu",), ("conv", 64, 64, 3, 1, 1), ("relu",), ("pool", 2, 2),
         ("conv", 64, 128, 3, 1, 1), ("relu",), ("conv", 128, 128, 3, 1, 1), ("relu",), ("pool", 2, 2),
         ("conv", 128, 256, 3, 1, 1), ("relu",), ("conv", 256, 256, 3, 1, 1), ("relu",),
         ("conv", 256, 256, 3, 1, 1), ("relu",), ("pool", 2, 2),
         ("conv", 256, 512, 3, 1, 1), ("relu",), ("conv", 512, 512, 3, 1, 1), ("relu",),
         ("conv", 512, 512, 3, 1, 1), ("relu",), ("pool", 2, 2),
         ("conv", 512, 512, 3, 1, 1), ("relu",), ("conv", 512, 512, 3, 1, 1), ("relu",),
         ("conv", 512, 512, 3, 1, 1), ("relu",)],
        (4, 9, 16, 23, 30),  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    ),
    "alex": (
        [("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2), ("conv", 64, 192, 5, 1, 2), ("relu",), ("pool", 3, 2),
         ("conv", 192, 384, 3, 1, 1), ("relu",), ("conv", 384, 256, 3, 1, 1), ("relu",),
         ("conv", 256, 256, 3, 1, 1), ("relu",)],
        (2, 5, 8, 10, 12),  # relu1 .. relu5
    ),
}


def _layer(spec: tuple) -> nn.Module:
    if spec[0] == "conv":
        return nn.Conv2d(*spec[1:3], kernel_size=spec[3], stride=spec[4], padding=spec[5])
    return nn.ReLU() if spec[0] == "relu" else nn.MaxPool2d(spec[1], spec[2])


class LinearLayer(nn.Module):
    """``lpips.NetLinLayer`` without its (inactive at eval) dropout: ``model.1`` is the 1x1 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """Perceptual distance between images (N, 3, H, W) in [-1, 1] -> (N,); frozen, differentiable in its inputs."""

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"net={net!r}; choose one of {tuple(BACKBONES)}")
        layers, ends = BACKBONES[net]
        self.net = nn.Module()
        channels, start = [], 0
        for number, end in enumerate(ends, start=1):
            # Children named by their torchvision index, as lpips names them (net.slice2.5.weight, ...).
            block = nn.Sequential()
            for index in range(start, end):
                block.add_module(str(index), _layer(layers[index]))
            setattr(self.net, f"slice{number}", block)
            channels.append([spec[2] for spec in layers[start:end] if spec[0] == "conv"][-1])
            start = end
        for index, width in enumerate(channels):
            setattr(self, f"lin{index}", LinearLayer(width))
        # lpips' ScalingLayer: ImageNet statistics mapped to [-1, 1] inputs.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.shift) / self.scale
        found = []
        for number in range(1, 6):
            x = getattr(self.net, f"slice{number}")(x)
            found.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))  # unit length over channels
        return found

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        dtype = self.shift.dtype
        pairs = zip(self.features(images.to(dtype)), self.features(targets.to(dtype)))
        # (N, C_k, h_k, w_k) squared differences -> lin_k -> (N, 1, h_k, w_k) -> spatial mean, summed over layers
        return sum(getattr(self, f"lin{k}")((a - b).square()).mean(dim=(1, 2, 3)) for k, (a, b) in enumerate(pairs))


WHAT_TO_GIVE = (
    "give a state-dict file of lpips.LPIPS(net='vgg' or 'alex') holding the backbone (net.slice*) and the lin0..lin4 "
    "layers (see kandinsky_video/training/lpips.py), or leave decoder.lpips_weights empty"
)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict from safetensors or a ``weights_only`` pickle; a pickle that needs any other
    object (which could run code) is refused, as are corrupt files, with a message instead of a traceback."""
    try:
        if path.suffix == ".safetensors":
            tensors = load_file(path)
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many types for corrupt, foreign or unsafe files
        if isinstance(error, pickle.UnpicklingError):
            reason = "torch.load(weights_only=True) refuses it: a corrupt pickle, or one of objects that could run code"
        else:
            reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
        raise CheckpointMismatchError(
            f"cannot read decoder.lpips_weights={path} ({reason}); {WHAT_TO_GIVE}. A pickle you trust can be turned "
            "into plain tensors once: safetensors.torch.save_file(torch.load(PATH, weights_only=False), "
            "'lpips.safetensors')"
        ) from error
    if not isinstance(tensors, Mapping) or not all(isinstance(value, torch.Tensor) for value in tensors.values()):
        raise CheckpointMismatchError(
            f"decoder.lpips_weights={path} holds a {type(tensors).__name__}, not a {{name: tensor}} state dict; "
            f"{WHAT_TO_GIVE}"
        )
    return dict(tensors)


def load_lpips(path: str | os.PathLike) -> LPIPS:
    """:class:`LPIPS` with the user's weights (backbone + lin layers, the layout in this module's docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"decoder.lpips_weights={path} does not exist; {WHAT_TO_GIVE}")
    tensors = read_tensors(path)
    tensors = {key: value for key, value in tensors.items() if not key.startswith(("scaling_layer.", "lins."))}
    net = "alex" if "net.slice2.3.weight" in tensors else "vgg"  # AlexNet's second conv is features[3]
    model = LPIPS(net)
    check_state_dict(tensors, model.state_dict(), f"LPIPS weights {path} (read as net={net!r})")
    model.load_state_dict(tensors)
    return model
