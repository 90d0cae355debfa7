"""Inception-I3D (Kinetics-400) in PyTorch: the FVD feature extractor.

The graph is DeepMind's ``kinetics-i3d`` network as exported to TF-Hub (``i3d-kinetics-400``), the one the FVD paper
uses. Module and parameter names follow ``pytorch_i3d`` (piergiaj/pytorch-i3d, used by VideoGPT and TATS) so the
TATS state dict loads as is; :mod:`.i3d_weights` maps the TF/Flax names onto them.

TF ``SAME`` padding is asymmetric for stride 2 (the extra pixel goes after), so it is computed per input size in
``forward`` rather than with the symmetric ``padding=`` of ``nn.Conv3d``.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

# Inception block widths (branch 0, branch 1 reduce/out, branch 2 reduce/out, branch 3 pool projection).
INCEPTION_BLOCKS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
INPUT_SIZE = 224


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``SAME`` padding (before, after) for one axis: output ceil(size/stride), extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, T, H, W) for a TF ``SAME`` conv or pool; pools pad with -inf so padding never wins the max."""
    pads = [same_padding(size, k, s) for size, k, s in zip(x.shape[2:], kernel, stride)]
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad wants (w_before, w_after, h_..., t_...)
    return F.pad(x, flat, value=value)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm + ReLU with TF ``SAME`` padding; the logits layer is a biased conv alone."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        batch_norm_eps: float | None = 1e-3,
    ):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        use_bn = batch_norm_eps is not None
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, bias=not use_bn)
        self.bn = nn.BatchNorm3d(out_channels, eps=batch_norm_eps) if use_bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        return x if self.bn is None else F.relu(self.bn(x))


def max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    return F.max_pool3d(pad_same(x, kernel, stride, value=-math.inf), kernel, stride)


class InceptionModule(nn.Module):
    def __init__(self, in_channels: int, widths: tuple[int, ...], batch_norm_eps: float):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(in_channels, w0, batch_norm_eps=batch_norm_eps)
        self.b1a = Unit3D(in_channels, w1a, batch_norm_eps=batch_norm_eps)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3), batch_norm_eps=batch_norm_eps)
        self.b2a = Unit3D(in_channels, w2a, batch_norm_eps=batch_norm_eps)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3), batch_norm_eps=batch_norm_eps)
        self.b3b = Unit3D(in_channels, w3, batch_norm_eps=batch_norm_eps)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch_3 = self.b3b(max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), branch_3], dim=1)


class I3D(nn.Module):
    """I3D returning the Kinetics logits averaged over time (the TF-Hub ``Mean:0`` tensor, the FVD feature).

    Input (B, 3, T, 224, 224) RGB in [-1, 1], T >= 9 (16 for FVD); output (B, num_classes), before softmax.
    ``width_divisor`` divides every channel count: 1 is the real network, larger values give the tiny test model.
    ``batch_norm_eps`` is 1e-3 in TF/Flax and 1e-5 in the pytorch_i3d port (TATS/VideoGPT weights).
    """

    def __init__(self, num_classes: int = 400, width_divisor: int = 1, batch_norm_eps: float = 1e-3):
        super().__init__()
        if width_divisor < 1 or 64 % width_divisor:
            raise ValueError(f"width_divisor must divide 64 (1 for the real network), got {width_divisor}")
        self.config = {"num_classes": num_classes, "width_divisor": width_divisor, "batch_norm_eps": batch_norm_eps}

        def width(channels: int) -> int:
            return max(channels // width_divisor, 1)

        self.Conv3d_1a_7x7 = Unit3D(3, width(64), (7, 7, 7), (2, 2, 2), batch_norm_eps)
        self.Conv3d_2b_1x1 = Unit3D(width(64), width(64), batch_norm_eps=batch_norm_eps)
        self.Conv3d_2c_3x3 = Unit3D(width(64), width(192), (3, 3, 3), batch_norm_eps=batch_norm_eps)
        channels = width(192)
        for name, widths in INCEPTION_BLOCKS.items():
            block = InceptionModule(channels, tuple(width(w) for w in widths), batch_norm_eps)
            self.add_module(name, block)
            channels = block.out_channels
        self.logits = Unit3D(channels, num_classes, batch_norm_eps=None)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[1] != 3 or video.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"I3D takes (B, 3, T, {INPUT_SIZE}, {INPUT_SIZE}) frames in [-1, 1], got {tuple(video.shape)}; "
                "resize with an FVD protocol (kandinsky_video.evaluation.fvd.preprocess_clips)"
            )
        x = self.Conv3d_1a_7x7(video)  # (B, 64, T/2, 112, 112)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (B, 64, T/2, 56, 56)
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (B, 192, T/2, 28, 28)
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))  # (B, 480, T/4, 14, 14)
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))  # (B, 832, T/8, 7, 7)
        x = self.Mixed_5c(self.Mixed_5b(x))  # (B, 1024, T/8, 7, 7)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # TF 'VALID': (B, 1024, T/8 - 1, 1, 1)
        logits = self.logits(x)  # (B, num_classes, T', 1, 1)
        return logits.flatten(2).mean(dim=2)  # average over the remaining time steps
