"""The keyframe generator: the frozen Kandinsky 3.0 U-Net with temporal layers inserted between its blocks."""

import json
import os
from dataclasses import dataclass

import torch
from diffusers import Kandinsky3UNet
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from safetensors.torch import load_file, save_file
from torch import nn

from ..convert.common import check_state_dict
from .frames import fold_frames, repeat_per_frame, unfold_frames
from .kandinsky3_walk import (
    KANDINSKY3_CONFIG_KEYS,
    Kandinsky3VideoWalk,
    TemporalLevel,
    attention_mask_bias,
    build_spatial_unet,
    inner_convs,
    level_widths,
    temporal_resnets,
)
from .temporal_layers import TemporalAttentionBlock

TEMPORAL_WEIGHTS_NAME = "temporal.safetensors"
TEMPORAL_CONFIG_NAME = "temporal_config.json"
PLACEMENTS = ("blocks", "layers")
KINDS = ("1d", "3d")


@dataclass
class VideoUNetOutput(BaseOutput):
    sample: torch.Tensor  # (B, C, T, H, W)


class KandinskyVideoUNet(Kandinsky3VideoWalk, ModelMixin, ConfigMixin):
    """Kandinsky3UNet (frozen spatial part, ``self.spatial``) + temporal layers + frame-position embedding.

    Placements (the paper's comparison): ``temporal_placement="blocks"`` (released Conv1dAttn1dBlocks: a
    TemporalResNetBlock after every in/out ResNet block, a TemporalAttentionBlock beside every self-attention) or
    ``"layers"`` (Conv1dAttn1dLayers: a convex temporal conv inside every spatial ResNet block, after each conv, with
    the same temporal attention). ``temporal_conv="3d"`` makes the temporal convs 3x3x3; ``temporal_attention="3d"``
    attends over 2x2xT windows. Every variant starts as the identity, so a fresh model equals the image model on
    each frame.

    The U-Net takes text context that is already projected (see ``text_encoder.TextProjection``).
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        time_embedding_dim: int = 1536,
        groups: int = 32,
        attention_head_dim: int = 64,
        layers_per_block: int = 3,
        block_out_channels: tuple[int, ...] = (384, 768, 1536, 3072),
        cross_attention_dim: int = 4096,
        temporal_placement: str = "blocks",
        temporal_conv: str = "1d",
        temporal_attention: str = "1d",
        frame_position_stride: int = 12,
    ):
        super().__init__()
        if temporal_placement not in PLACEMENTS:
            raise ValueError(f"temporal_placement={temporal_placement!r}; choose one of {PLACEMENTS}")
        for name, value in (("temporal_conv", temporal_conv), ("temporal_attention", temporal_attention)):
            if value not in KINDS:
                raise ValueError(f"{name}={value!r}; choose one of {KINDS}")
        self.gradient_checkpointing = False
        self.spatial = build_spatial_unet(
            in_channels=in_channels,
            time_embedding_dim=time_embedding_dim,
            groups=groups,
            attention_head_dim=attention_head_dim,
            layers_per_block=layers_per_block,
            block_out_channels=block_out_channels,
            cross_attention_dim=cross_attention_dim,
        )
        init_channels = block_out_channels[0] // 2
        # Same sinusoid as the diffusion time (the released SinusoidalPosEmb), over absolute source-frame indices.
        self.frame_proj = Timesteps(init_channels, flip_sin_to_cos=False, downscale_freq_shift=1)
        self.frame_embedding = TimestepEmbedding(init_channels, time_embedding_dim)

        conv_kernel = 3 if temporal_conv == "3d" else 1
        window = 2 if temporal_attention == "3d" else 1
        down_widths, down_attn_widths, up_widths, up_attn_widths = level_widths(self.spatial)

        def attention(width: int, block) -> TemporalAttentionBlock | None:
            if not block.self_attention:
                return None
            return TemporalAttentionBlock(width, time_embedding_dim, groups, attention_head_dim, window=window)

        def level(block, resnet_widths: list[int], attention_width: int) -> TemporalLevel:
            if temporal_placement == "blocks":
                return TemporalLevel(
                    resnets_in=temporal_resnets(resnet_widths, time_embedding_dim, groups, conv_kernel),
                    resnets_out=temporal_resnets(resnet_widths, time_embedding_dim, groups, conv_kernel),
                    attention=attention(attention_width, block),
                )
            kernel = (3, conv_kernel, conv_kernel)
            return TemporalLevel(
                attention=attention(attention_width, block),
                inner_in=inner_convs(block.resnets_in, kernel),
                inner_out=inner_convs(block.resnets_out, kernel),
            )

        self.temporal_down = nn.ModuleList(
            level(block, [width] * len(block.resnets_in), attn_width)
            for block, width, attn_width in zip(self.spatial.down_blocks, down_widths, down_attn_widths)
        )
        self.temporal_up = nn.ModuleList(
            level(block, widths, attn_width)
            for block, widths, attn_width in zip(self.spatial.up_blocks, up_widths, up_attn_widths)
        )

    # ---- building and freezing -------------------------------------------------------------------------------

    @classmethod
    def from_kandinsky3(
        cls, unet: Kandinsky3UNet | str | os.PathLike, subfolder: str | None = None, **temporal_config
    ) -> "KandinskyVideoUNet":
        """Wrap a pretrained Kandinsky3UNet (instance, local diffusers folder or hub id) with fresh temporal layers.

        The U-Net's text projection (``encoder_hid_proj``) is not copied: load it into the text encoder with
        ``TextProjection.from_kandinsky3_unet``.
        """
        if not isinstance(unet, Kandinsky3UNet):
            if subfolder is None and os.path.isdir(os.path.join(str(unet), "unet")):
                subfolder = "unet"
            unet = Kandinsky3UNet.from_pretrained(unet, subfolder=subfolder)
        if unet.config.in_channels != 4 and "in_channels" not in temporal_config:
            temporal_config["in_channels"] = unet.config.in_channels
        model = cls(**{key: unet.config[key] for key in KANDINSKY3_CONFIG_KEYS}, **temporal_config)
        spatial_weights = {k: v for k, v in unet.state_dict().items() if not k.startswith("encoder_hid_proj.")}
        model.spatial.load_state_dict(spatial_weights, strict=True)
        return model if unet.dtype == model.dtype else model.to(unet.dtype)

    def temporal_parameters(self) -> list[nn.Parameter]:
        """Everything that trains: temporal layers and the frame-position embedding."""
        return [parameter for name, parameter in self.named_parameters() if not name.startswith("spatial.")]

    def freeze_spatial(self) -> "KandinskyVideoUNet":
        """Freeze the Kandinsky 3.0 weights (requires_grad False); only temporal parameters train."""
        self.spatial.requires_grad_(False)
        return self

    def temporal_state_dict(self) -> dict[str, torch.Tensor]:
        return {name: tensor for name, tensor in self.state_dict().items() if not name.startswith("spatial.")}

    def save_temporal(self, save_directory: str | os.PathLike) -> None:
        """Write only the temporal weights (``temporal.safetensors``) and the full config, AnimateDiff-style."""
        os.makedirs(save_directory, exist_ok=True)
        tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in self.temporal_state_dict().items()}
        save_file(tensors, os.path.join(save_directory, TEMPORAL_WEIGHTS_NAME), metadata={"format": "pt"})
        with open(os.path.join(save_directory, TEMPORAL_CONFIG_NAME), "w") as file:
            json.dump(dict(self.config), file, indent=2, sort_keys=True)

    def load_temporal(self, directory: str | os.PathLike) -> "KandinskyVideoUNet":
        """Load weights written by :meth:`save_temporal` (strict: every temporal key, matching shapes)."""
        path = os.path.join(directory, TEMPORAL_WEIGHTS_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no {TEMPORAL_WEIGHTS_NAME} in {directory!s}; write one with save_temporal()")
        config_path = os.path.join(directory, TEMPORAL_CONFIG_NAME)
        if os.path.isfile(config_path):
            with open(config_path) as file:
                saved = json.load(file)
            different = {k: (v, self.config[k]) for k, v in saved.items()
                         if not k.startswith("_") and k in self.config and _plain(self.config[k]) != _plain(v)}
            if different:
                raise ValueError(f"temporal weights in {directory!s} were saved for another config (saved, ours): {different}")
        tensors = load_file(path)
        check_state_dict(tensors, self.temporal_state_dict(), f"temporal weights {path}")
        self.load_state_dict(tensors, strict=False)
        return self

    # ---- forward ---------------------------------------------------------------------------------------------

    def default_frame_positions(self, num_frames: int, device: torch.device | None = None) -> torch.Tensor:
        """The released grid: keyframes ``frame_position_stride`` source frames apart (2 fps of ~24 fps video)."""
        return torch.arange(num_frames, device=device) * self.config.frame_position_stride

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        frame_positions: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> VideoUNetOutput | tuple[torch.Tensor]:
        """Predict noise for every frame.

        Args:
            sample: (B, C, T, H, W) noisy latents; any T; H and W divisible by 2**(levels-1).
            timestep: scalar or (B,): one diffusion time per video, shared by its frames.
            encoder_hidden_states: (B, L, D) projected text context; encoder_attention_mask: (B, L) 0/1 or bool.
            frame_positions: (T,) or (B, T) absolute source-frame indices; default ``arange(T) * stride``.
        Returns:
            (B, C, T, H, W) prediction.
        """
        if sample.ndim != 5:
            raise ValueError(f"sample must be (B, C, T, H, W), got shape {tuple(sample.shape)}")
        batch, _, num_frames, height, width = sample.shape
        factor = 2 ** (len(self.config.block_out_channels) - 1)
        if height % factor or width % factor:
            raise ValueError(f"latent size {height}x{width} must be divisible by {factor} (image size by {8 * factor})")
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)
        if frame_positions is None:
            frame_positions = self.default_frame_positions(num_frames, sample.device)
        frame_positions = torch.as_tensor(frame_positions, device=sample.device).reshape(-1, num_frames).expand(batch, -1)

        mask_bias = attention_mask_bias(encoder_attention_mask, sample.dtype)
        time_embed = self._time_embedding(timestep, encoder_hidden_states, mask_bias)  # (B, D): per video
        frame_embed = self.frame_embedding(self.frame_proj(frame_positions.reshape(-1)).to(sample.dtype))  # (B*T, D)

        out = self._walk(
            fold_frames(sample),  # (B*T, C, H, W)
            repeat_per_frame(time_embed, num_frames),
            repeat_per_frame(encoder_hidden_states, num_frames),
            repeat_per_frame(mask_bias, num_frames),
            num_frames,
            frame_embed,
        )
        out = unfold_frames(out, num_frames)
        return VideoUNetOutput(sample=out) if return_dict else (out,)


def _plain(value):
    """Config values compare equal whether they came from JSON (lists) or Python (tuples)."""
    return list(value) if isinstance(value, (list, tuple)) else value
