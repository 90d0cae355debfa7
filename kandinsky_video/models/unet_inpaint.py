"""Kandinsky 3 U-Net conditioned on extra input channels: inpainting (mask + masked image), and keyframe conditioning.

The released inpainting U-Net is the text-to-image one with a 9-channel input conv: [noisy latent (4), mask (1),
masked-image latent (4)]. The same input-channel extension is how a keyframe could be conditioned on a given image
(new channels zero-initialised on a copy of the input conv), so the extra channel count is a config value.
"""

import os

import torch
from diffusers import Kandinsky3UNet
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .kandinsky3_walk import KANDINSKY3_CONFIG_KEYS, build_spatial_unet


class Kandinsky3ConditionedUNet(ModelMixin, ConfigMixin):
    """``self.spatial`` (Kandinsky3UNet taking projected context) with ``condition_channels`` more input channels."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        condition_channels: int = 5,
        time_embedding_dim: int = 1536,
        groups: int = 32,
        attention_head_dim: int = 64,
        layers_per_block: int = 3,
        block_out_channels: tuple[int, ...] = (384, 768, 1536, 3072),
        cross_attention_dim: int = 4096,
    ):
        super().__init__()
        self.spatial = build_spatial_unet(
            in_channels=in_channels, time_embedding_dim=time_embedding_dim, groups=groups,
            attention_head_dim=attention_head_dim, layers_per_block=layers_per_block,
            block_out_channels=block_out_channels, cross_attention_dim=cross_attention_dim,
        )
        # diffusers ties the output width to in_channels, so only the input conv widens.
        self.spatial.conv_in = nn.Conv2d(in_channels + condition_channels, block_out_channels[0] // 2, 3, padding=1)

    @classmethod
    def from_kandinsky3(cls, unet: Kandinsky3UNet | str | os.PathLike, condition_channels: int = 5) -> "Kandinsky3ConditionedUNet":
        """The image U-Net with zero weights on the new input channels: it starts as the image model."""
        if not isinstance(unet, Kandinsky3UNet):
            unet = Kandinsky3UNet.from_pretrained(unet, subfolder="unet" if os.path.isdir(os.path.join(str(unet), "unet")) else None)
        model = cls(in_channels=unet.config.in_channels, condition_channels=condition_channels,
                    **{key: unet.config[key] for key in KANDINSKY3_CONFIG_KEYS})
        weights = {k: v for k, v in unet.state_dict().items() if not k.startswith("encoder_hid_proj.")}
        conv_in = torch.zeros_like(model.spatial.conv_in.weight)
        conv_in[:, : unet.config.in_channels] = weights["conv_in.weight"]
        model.spatial.load_state_dict({**weights, "conv_in.weight": conv_in}, strict=True)
        return model

    def forward(self, sample, timestep, encoder_hidden_states, encoder_attention_mask, condition) -> torch.Tensor:
        """sample (B, C, H, W), condition (B, condition_channels, H, W) -> prediction (B, C, H, W)."""
        expected = self.config.condition_channels
        if condition.shape[1] != expected or condition.shape[-2:] != sample.shape[-2:]:
            raise ValueError(f"condition must be (B, {expected}, {sample.shape[-2]}, {sample.shape[-1]}), got {tuple(condition.shape)}")
        x = torch.cat([sample, condition], dim=1)
        return self.spatial(x, timestep, encoder_hidden_states, encoder_attention_mask).sample
