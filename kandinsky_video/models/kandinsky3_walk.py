"""Running a frozen diffusers ``Kandinsky3UNet`` with temporal layers between (and inside) its blocks.

diffusers' blocks are reused as they are; this module only re-walks them in the released order so temporal
layers can sit where Kandinsky Video puts them:

    down level: self-attn -> [temporal attn] -> 3 x (resnet_in -> [temporal in] -> cross-attn -> resnet_out -> [temporal out])
    up level:   3 x ([temporal in] -> resnet_in -> cross-attn -> [temporal out] -> resnet_out) -> [temporal attn] -> self-attn

and, for the interpolation model and the "layers" placement, a convex temporal conv after the conv of each of the
four Blocks inside every spatial ResNet block. Frames (or interpolation groups) are folded into the batch.
"""

from functools import partial

import torch
from diffusers import Kandinsky3UNet
from diffusers.models.unets.unet_kandinsky3 import Kandinsky3ResNetBlock
from torch import nn

from .temporal_layers import ConvexTemporalConv, TemporalAttentionBlock, TemporalResNetBlock

KANDINSKY3_CONFIG_KEYS = (
    "time_embedding_dim",
    "groups",
    "attention_head_dim",
    "layers_per_block",
    "block_out_channels",
    "cross_attention_dim",
)


def build_spatial_unet(**config) -> Kandinsky3UNet:
    """A Kandinsky3UNet that takes already-projected text context.

    The text projection lives in the text encoder because the released model zeroes padded tokens after it
    (diffusers zeroes them before); the U-Net's own ``encoder_hid_proj`` is therefore the identity here.
    """
    unet = Kandinsky3UNet(encoder_hid_dim=config["cross_attention_dim"], **config)
    unet.encoder_hid_proj = nn.Identity()
    return unet


def level_widths(unet: Kandinsky3UNet) -> tuple[list[int], list[int], list[int], list[int]]:
    """Widths of the tensors temporal layers see, per level: (down resnet, down self-attn, up resnet, up self-attn).

    Down: a triplet's temporal blocks follow its resnets, so they run at the level's output width. Up: they precede
    the resnets, so they run at the in_resnet input width (input + skip for the first triplet).
    """
    down = [block.resnets_in[0].resnet_blocks[-1].projection.out_channels for block in unet.down_blocks]
    down_attn = [block.resnets_in[0].resnet_blocks[0].projection.in_channels for block in unet.down_blocks]
    up = [[resnet.resnet_blocks[0].projection.in_channels for resnet in block.resnets_in] for block in unet.up_blocks]
    up_attn = [block.resnets_out[-1].resnet_blocks[-1].projection.out_channels for block in unet.up_blocks]
    return down, down_attn, up, up_attn


class TemporalLevel(nn.Module):
    """The temporal layers of one U-Net level; every part is optional so all placements share one walk."""

    def __init__(
        self,
        resnets_in: list[nn.Module] | None = None,
        resnets_out: list[nn.Module] | None = None,
        attention: TemporalAttentionBlock | None = None,
        inner_in: list[nn.ModuleList] | None = None,
        inner_out: list[nn.ModuleList] | None = None,
    ):
        super().__init__()
        self.resnets_in = nn.ModuleList(resnets_in) if resnets_in else None
        self.resnets_out = nn.ModuleList(resnets_out) if resnets_out else None
        self.attention = attention
        self.inner_in = nn.ModuleList(inner_in) if inner_in else None
        self.inner_out = nn.ModuleList(inner_out) if inner_out else None


def temporal_resnets(widths: list[int], time_dim: int, groups: int, spatial_kernel: int) -> list[TemporalResNetBlock]:
    return [TemporalResNetBlock(width, time_dim, groups, spatial_kernel=spatial_kernel) for width in widths]


def inner_convs(resnets: nn.ModuleList, kernel: tuple[int, int, int]) -> list[nn.ModuleList]:
    """One convex temporal conv per Block of each spatial ResNet block, at that Block's output width."""
    return [
        nn.ModuleList(ConvexTemporalConv(block.projection.out_channels, kernel) for block in resnet.resnet_blocks)
        for resnet in resnets
    ]


def resnet_forward(
    resnet: Kandinsky3ResNetBlock, x: torch.Tensor, time_embed: torch.Tensor, convs: nn.ModuleList, num_frames: int
) -> torch.Tensor:
    """diffusers' Kandinsky3ResNetBlock.forward with a temporal conv after each Block's conv, before down-sampling."""
    out = x
    for block, conv in zip(resnet.resnet_blocks, convs):
        out = block.group_norm(out, time_embed)
        out = block.activation(out)
        out = block.up_sample(out)
        out = block.projection(out)
        out = conv(out, num_frames)
        out = block.down_sample(out)
    x = resnet.shortcut_down_sample(resnet.shortcut_projection(resnet.shortcut_up_sample(x)))
    return x + out


class Kandinsky3VideoWalk:
    """Mixin for the video U-Nets: ``self.spatial`` (Kandinsky3UNet), ``self.temporal_down`` / ``temporal_up``."""

    gradient_checkpointing: bool

    def _run(self, function, *args):
        """Call a block, through activation checkpointing when training with it enabled."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(function, *args)
        return function(*args)

    def _resnet(self, resnet, convs, x, time_embed, num_frames):
        if convs is None:
            return self._run(resnet, x, time_embed)
        return self._run(partial(resnet_forward, resnet, convs=convs, num_frames=num_frames), x, time_embed)

    def _temporal(self, block, x, time_embed, num_frames):
        return x if block is None else self._run(partial(block, num_frames=num_frames), x, time_embed)

    def _time_embedding(self, timestep: torch.Tensor, context: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        """Diffusion-time MLP plus attention-pooled text, one row per batch element: (N, time_embedding_dim)."""
        spatial = self.spatial
        time_embed = spatial.time_embedding(spatial.time_proj(timestep).to(context.dtype))
        return spatial.add_time_condition(time_embed, context, mask_bias)

    def _walk(
        self,
        x: torch.Tensor,
        time_embed: torch.Tensor,
        context: torch.Tensor,
        mask_bias: torch.Tensor,
        num_frames: int,
        frame_embed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B*T, C_in, H, W) folded frames -> (B*T, C_out, H, W); context, time and frame embeddings per frame."""
        spatial = self.spatial
        x = spatial.conv_in(x)
        skips = []
        for level, (block, temporal) in enumerate(zip(spatial.down_blocks, self.temporal_down)):
            if block.self_attention:
                x = self._run(block.attentions[0], x, time_embed)
            if temporal.attention is not None:
                x = self._run(partial(temporal.attention, num_frames=num_frames), x, time_embed, frame_embed)
            for i, (resnet_in, attention, resnet_out) in enumerate(
                zip(block.resnets_in, block.attentions[1:], block.resnets_out)
            ):
                x = self._resnet(resnet_in, temporal.inner_in and temporal.inner_in[i], x, time_embed, num_frames)
                x = self._temporal(temporal.resnets_in and temporal.resnets_in[i], x, time_embed, num_frames)
                if block.context_dim is not None:
                    x = self._run(attention, x, time_embed, context, mask_bias)
                x = self._resnet(resnet_out, temporal.inner_out and temporal.inner_out[i], x, time_embed, num_frames)
                x = self._temporal(temporal.resnets_out and temporal.resnets_out[i], x, time_embed, num_frames)
            if level != len(spatial.down_blocks) - 1:
                skips.append(x)

        for level, (block, temporal) in enumerate(zip(spatial.up_blocks, self.temporal_up)):
            if level != 0:
                x = torch.cat([x, skips.pop()], dim=1)
            for i, (resnet_in, attention, resnet_out) in enumerate(
                zip(block.resnets_in, block.attentions[1:], block.resnets_out)
            ):
                x = self._temporal(temporal.resnets_in and temporal.resnets_in[i], x, time_embed, num_frames)
                x = self._resnet(resnet_in, temporal.inner_in and temporal.inner_in[i], x, time_embed, num_frames)
                if block.context_dim is not None:
                    x = self._run(attention, x, time_embed, context, mask_bias)
                x = self._temporal(temporal.resnets_out and temporal.resnets_out[i], x, time_embed, num_frames)
                x = self._resnet(resnet_out, temporal.inner_out and temporal.inner_out[i], x, time_embed, num_frames)
            if temporal.attention is not None:
                x = self._run(partial(temporal.attention, num_frames=num_frames), x, time_embed, frame_embed)
            if block.self_attention:
                x = self._run(block.attentions[0], x, time_embed)

        return spatial.conv_out(spatial.conv_act_out(spatial.conv_norm_out(x)))


def attention_mask_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, L) 0/1 or bool mask -> (N, 1, L) additive bias, exactly as Kandinsky3UNet.forward builds it."""
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)
