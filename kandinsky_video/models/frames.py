"""The one place where video frames are folded into the batch and back.

Public tensors are ``(B, C, T, H, W)``; spatial (image) layers see ``(B*T, C, H, W)``; temporal convolutions see
``(B, C, T, H, W)`` again and temporal attention sees one sequence of ``T`` tokens per pixel.
"""

import torch
from einops import rearrange, repeat


def fold_frames(video: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frames of one video contiguous."""
    return rearrange(video, "b c t h w -> (b t) c h w")


def unfold_frames(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    return rearrange(frames, "(b t) c h w -> b c t h w", t=num_frames)


def frames_to_sequences(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B*H*W, T, C): one sequence over time per pixel, for temporal attention."""
    return rearrange(frames, "(b t) c h w -> (b h w) t c", t=num_frames)


def sequences_to_frames(sequences: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B*H*W, T, C) -> (B*T, C, H, W), the inverse of :func:`frames_to_sequences`."""
    return rearrange(sequences, "(b h w) t c -> (b t) c h w", h=height, w=width)


def repeat_per_frame(per_video: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, ...) -> (B*T, ...): a per-video tensor (time embedding, text context) repeated for each frame."""
    return repeat(per_video, "b ... -> (b t) ...", t=num_frames)
