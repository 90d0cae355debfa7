"""Temporal layers that mix information across frames; the spatial (image) layers around them stay frozen.

All layers take frames folded into the batch, ``(B*T, C, H, W)``, plus ``num_frames`` = T, and return the same
shape. Norms act per frame; only the convolutions and the attention see time.
"""

import torch
import torch.nn.functional as F
from diffusers.models.unets.unet_kandinsky3 import Kandinsky3ConditionalGroupNorm
from einops import rearrange
from torch import nn

from .frames import fold_frames, frames_to_sequences, sequences_to_frames, unfold_frames


class TemporalResNetBlock(nn.Module):
    """The released "Temporal Conv1D block": four (norm -> SiLU -> conv over time) layers and a residual.

    Channels C -> C/2 -> C/2 -> C/2 -> C with temporal kernels 1, 3, 3, 1; ``spatial_kernel`` 3 gives the paper's
    3x3x3 variant (Conv3dAttn1dBlocks). The last conv is zero-initialised, so a fresh block is the identity.
    """

    def __init__(
        self, channels: int, time_embed_dim: int, groups: int, compression_ratio: int = 2, spatial_kernel: int = 1
    ):
        super().__init__()
        hidden = channels // compression_ratio
        widths = [(channels, hidden), (hidden, hidden), (hidden, hidden), (hidden, channels)]
        self.norms = nn.ModuleList(
            [Kandinsky3ConditionalGroupNorm(groups, c_in, time_embed_dim) for c_in, _ in widths]
        )
        self.convs = nn.ModuleList(
            [
                nn.Conv3d(c_in, c_out, (k, spatial_kernel, spatial_kernel), padding=(k // 2, spatial_kernel // 2, spatial_kernel // 2))
                for (c_in, c_out), k in zip(widths, (1, 3, 3, 1))
            ]
        )
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
        out = x  # (B*T, C, H, W)
        for norm, conv in zip(self.norms, self.convs):
            out = F.silu(norm(out, time_embed))
            out = fold_frames(conv(unfold_frames(out, num_frames)))  # conv sees (B, C, T, H, W)
        return x + out


class TemporalAttention(nn.Module):
    """Multi-head self-attention over frames at every spatial position (or 2x2 window), through SDPA.

    ``window`` 1 attends over the T frames of one pixel (released Attn1D); ``window`` 2 attends over the 4*T tokens
    of a 2x2xT block (the paper's Attn3D variant). The output projection starts at zero.
    """

    def __init__(self, channels: int, head_dim: int, window: int = 1):
        super().__init__()
        if channels % head_dim:
            raise ValueError(f"temporal attention width {channels} is not a multiple of attention_head_dim {head_dim}")
        self.heads = channels // head_dim
        self.window = window
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.Linear(channels, channels, bias=False)
        nn.init.zeros_(self.to_out.weight)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.window == 1:
            tokens = frames_to_sequences(x, num_frames)  # (B*H*W, T, C)
        else:
            if height % self.window or width % self.window:
                raise ValueError(
                    f"3D-window temporal attention needs feature maps divisible by {self.window}, got {height}x{width}; "
                    "use a larger image size or temporal_attention_window=1"
                )
            tokens = rearrange(
                x, "(b t) c (h p) (w q) -> (b h w) (t p q) c", t=num_frames, p=self.window, q=self.window
            )
        q, k, v = (rearrange(proj(tokens), "n s (h d) -> n h s d", h=self.heads) for proj in (self.to_q, self.to_k, self.to_v))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "n h s d -> n s (h d)")
        out = self.to_out(out)
        if self.window == 1:
            return sequences_to_frames(out, height, width)
        return rearrange(
            out, "(b h w) (t p q) c -> (b t) c (h p) (w q)", h=height // self.window, w=width // self.window,
            t=num_frames, p=self.window, q=self.window,
        )


class TemporalAttentionBlock(nn.Module):
    """The released "Temporal Attn1D block": frame-position-conditioned attention over time, then a 1x1 FFN.

    in_norm is conditioned on the frame-position embedding (the only place the frame index enters), out_norm on the
    time embedding. The attention output and the FFN's last conv are zero-initialised here, so a fresh block is the
    identity; the released weights do not follow that rule for the FFN and the converter loads them as they are.
    """

    def __init__(self, channels: int, time_embed_dim: int, groups: int, head_dim: int, expansion_ratio: int = 4, window: int = 1):
        super().__init__()
        self.in_norm = Kandinsky3ConditionalGroupNorm(groups, channels, time_embed_dim)
        self.attention = TemporalAttention(channels, head_dim, window)
        self.out_norm = Kandinsky3ConditionalGroupNorm(groups, channels, time_embed_dim)
        self.feed_forward = nn.Sequential(
            nn.Conv2d(channels, expansion_ratio * channels, kernel_size=1, bias=False),
            nn.SiLU(),
            nn.Conv2d(expansion_ratio * channels, channels, kernel_size=1, bias=False),
        )
        nn.init.zeros_(self.feed_forward[2].weight)

    def forward(
        self, x: torch.Tensor, time_embed: torch.Tensor, frame_embed: torch.Tensor, num_frames: int
    ) -> torch.Tensor:
        x = x + self.attention(self.in_norm(x, frame_embed), num_frames)
        return x + self.feed_forward(self.out_norm(x, time_embed))


class ConvexTemporalConv(nn.Module):
    """x -> (1 - a) * x + a * conv(x) with a temporal conv and a scalar merge a; both start at zero (identity).

    The interpolation U-Net runs it after every Block conv of every spatial ResNet block (its time axis is the
    interpolation group), the keyframe U-Net's "layers" placement the same way, and MoVQ Video after each conv of
    its decoder ResNet blocks (with a 3x3x3 kernel).
    """

    def __init__(self, channels: int, kernel: tuple[int, int, int] = (3, 1, 1)):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel, padding=tuple(k // 2 for k in kernel))
        self.merge = nn.Parameter(torch.zeros(1))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        out = fold_frames(self.conv(unfold_frames(x, num_frames)))
        return (1 - self.merge) * x + self.merge * out
