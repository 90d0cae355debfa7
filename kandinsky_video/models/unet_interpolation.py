"""The interpolation model: predicts k latent frames between each pair of neighbouring keyframes in one pass."""

import os
from dataclasses import dataclass

import torch
from diffusers import Kandinsky3UNet
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn

from .frames import fold_frames, repeat_per_frame, unfold_frames
from .kandinsky3_walk import (
    KANDINSKY3_CONFIG_KEYS,
    Kandinsky3VideoWalk,
    TemporalLevel,
    attention_mask_bias,
    build_spatial_unet,
    inner_convs,
)

IMAGE_CONV_INPUTS = ("first_noisy", "left_keyframe")  # where from_kandinsky3 puts the image U-Net's input conv


@dataclass
class InterpolationUNetOutput(BaseOutput):
    sample: torch.Tensor  # (B, k*C, G, H, W)


class KandinskyVideoInterpolationUNet(Kandinsky3VideoWalk, ModelMixin, ConfigMixin):
    """Kandinsky 3 topology on ``[left keyframe, k noisy latents, right keyframe]`` channels -> k latents (v-pred).

    - The time axis of its temporal convs runs over the G = N-1 interpolation groups of one video: every Block
      conv of every spatial ResNet block is followed by a (3,1,1) conv merged convexly, (1-a)*x + a*conv(x).
    - No text: the context is always [null_embedding, 0] with mask [1, 0] (``self.null_embedding``).
    - Conditioning: time_embed = MLP(t) + pooled context; then beta*MLP_p(perturbation) + (1-beta)*time_embed;
      then + gamma*skip_embedding(skip), with beta, gamma learned scalars.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        frames_between: int = 3,
        time_embedding_dim: int = 1536,
        groups: int = 32,
        attention_head_dim: int = 64,
        layers_per_block: int = 3,
        block_out_channels: tuple[int, ...] = (384, 768, 1536, 3072),
        cross_attention_dim: int = 4096,
        num_skip_embeddings: int = 20,
    ):
        super().__init__()
        if frames_between < 1:
            raise ValueError(f"frames_between={frames_between}; the model must predict at least one frame per pair")
        self.gradient_checkpointing = False
        self.spatial = build_spatial_unet(
            in_channels=latent_channels,
            time_embedding_dim=time_embedding_dim,
            groups=groups,
            attention_head_dim=attention_head_dim,
            layers_per_block=layers_per_block,
            block_out_channels=block_out_channels,
            cross_attention_dim=cross_attention_dim,
        )
        init_channels = block_out_channels[0] // 2
        # Replace the image input/output convs: (k+2) latents in, k latents out (frame-major channels).
        self.spatial.conv_in = nn.Conv2d(latent_channels * (frames_between + 2), init_channels, 3, padding=1)
        self.spatial.conv_out = nn.Conv2d(init_channels, latent_channels * frames_between, 3, padding=1)

        self.null_embedding = nn.Parameter(torch.zeros(cross_attention_dim))
        self.perturbation_embedding = TimestepEmbedding(init_channels, time_embedding_dim)
        self.perturbation_merge = nn.Parameter(torch.zeros(1))
        self.skip_embedding = nn.Embedding(num_skip_embeddings, time_embedding_dim)
        self.skip_merge = nn.Parameter(torch.zeros(1))

        kernel = (3, 1, 1)
        self.temporal_down = nn.ModuleList(
            TemporalLevel(inner_in=inner_convs(b.resnets_in, kernel), inner_out=inner_convs(b.resnets_out, kernel))
            for b in self.spatial.down_blocks
        )
        self.temporal_up = nn.ModuleList(
            TemporalLevel(inner_in=inner_convs(b.resnets_in, kernel), inner_out=inner_convs(b.resnets_out, kernel))
            for b in self.spatial.up_blocks
        )

    @classmethod
    def from_kandinsky3(
        cls,
        unet: Kandinsky3UNet | str | os.PathLike,
        frames_between: int = 3,
        null_embedding: torch.Tensor | None = None,
        subfolder: str | None = None,
        image_conv_on: str = "first_noisy",
    ) -> "KandinskyVideoInterpolationUNet":
        """Initialise from a text-to-image U-Net by the paper's rule, so that at init it predicts k copies of it.

        The T2I input conv weights go to one input latent's channels (``image_conv_on``: the first noisy latent,
        or the left keyframe), every other (new) input channel is zero; the output conv is replicated k times;
        temporal convs and all merges start at zero. The paper leaves open which latent keeps the image conv; on
        the left keyframe the model starts by redrawing it and no longer treats both keyframes alike, which
        trains faster where the noisy input carries nothing (see docs/demo.md).
        """
        if image_conv_on not in IMAGE_CONV_INPUTS:
            raise ValueError(f"image_conv_on={image_conv_on!r}; choose one of {IMAGE_CONV_INPUTS}")
        if not isinstance(unet, Kandinsky3UNet):
            if subfolder is None and os.path.isdir(os.path.join(str(unet), "unet")):
                subfolder = "unet"
            unet = Kandinsky3UNet.from_pretrained(unet, subfolder=subfolder)
        channels = unet.config.in_channels
        model = cls(
            latent_channels=channels,
            frames_between=frames_between,
            **{key: unet.config[key] for key in KANDINSKY3_CONFIG_KEYS},
        )
        weights = {k: v for k, v in unet.state_dict().items() if not k.startswith("encoder_hid_proj.")}
        conv_in = torch.zeros_like(model.spatial.conv_in.weight)
        offset = channels if image_conv_on == "first_noisy" else 0  # inputs: [left keyframe, k noisy, right keyframe]
        conv_in[:, offset : offset + channels] = weights["conv_in.weight"]
        weights["conv_in.weight"] = conv_in
        weights["conv_out.weight"] = weights["conv_out.weight"].repeat(frames_between, 1, 1, 1)
        weights["conv_out.bias"] = weights["conv_out.bias"].repeat(frames_between)
        model.spatial.load_state_dict(weights, strict=True)
        if null_embedding is not None:
            model.null_embedding.data.copy_(null_embedding)
        return model

    def null_context(self, batch: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The released interpolation context: [null_embedding, 0] with mask [1, 0], for every batch element."""
        context = torch.zeros(batch, 2, self.config.cross_attention_dim, device=self.device, dtype=dtype)
        context[:, 0] = self.null_embedding.to(dtype)
        mask = torch.tensor([[1, 0]], device=self.device).expand(batch, -1)
        return context, mask

    def forward(
        self,
        sample: torch.Tensor,
        keyframes: torch.Tensor,
        timestep: torch.Tensor | float | int,
        skip: torch.Tensor | int,
        perturbation: torch.Tensor | float | int = 0,
        return_dict: bool = True,
    ) -> InterpolationUNetOutput | tuple[torch.Tensor]:
        """Predict v for the k frames of every interpolation group.

        Args:
            sample: (B, k*C, G, H, W) noisy latents of the in-between frames, channels frame-major; G = N-1 groups.
            keyframes: (B, C, N, H, W) clean keyframe latents (zeros for the unconditional branch).
            timestep: scalar or (B,) diffusion time; skip: scalar or (B,) source frames between neighbouring
                keyframes divided by (k+1) (released inference: 3 then 1); perturbation: scalar or (B,) noise
                level applied to the keyframes (0 at inference).
        Returns:
            (B, k*C, G, H, W) prediction.
        """
        k, channels = self.config.frames_between, self.config.latent_channels
        if sample.ndim != 5 or sample.shape[1] != k * channels:
            raise ValueError(f"sample must be (B, {k * channels}, G, H, W) for k={k}, got {tuple(sample.shape)}")
        batch, _, num_groups, height, width = sample.shape
        if keyframes.shape != (batch, channels, num_groups + 1, height, width):
            raise ValueError(
                f"keyframes must be (B, C, G+1, H, W) = {(batch, channels, num_groups + 1, height, width)}, "
                f"got {tuple(keyframes.shape)}"
            )
        factor = 2 ** (len(self.config.block_out_channels) - 1)
        if height % factor or width % factor:
            raise ValueError(f"latent size {height}x{width} must be divisible by {factor}")
        device, dtype = sample.device, sample.dtype

        def per_video(value, kind):
            return torch.as_tensor(value, device=device, dtype=kind).reshape(-1).expand(batch)

        # (B*G, (k+2)*C, H, W): [left keyframe, k noisy latents, right keyframe] for every group.
        x = torch.cat([fold_frames(keyframes[:, :, :-1]), fold_frames(sample), fold_frames(keyframes[:, :, 1:])], dim=1)

        context, mask = self.null_context(batch, dtype)
        mask_bias = attention_mask_bias(mask, dtype)
        time_embed = self._time_embedding(per_video(timestep, torch.float32), context, mask_bias)
        perturbation_embed = self.perturbation_embedding(
            self.spatial.time_proj(per_video(perturbation, torch.float32)).to(dtype)
        )
        time_embed = self.perturbation_merge * perturbation_embed + (1 - self.perturbation_merge) * time_embed
        time_embed = time_embed + self.skip_merge * self.skip_embedding(per_video(skip, torch.long))

        out = self._walk(
            x,
            repeat_per_frame(time_embed, num_groups),
            repeat_per_frame(context, num_groups),
            repeat_per_frame(mask_bias, num_groups),
            num_groups,
        )
        out = unfold_frames(out, num_groups)  # (B, k*C, G, H, W)
        return InterpolationUNetOutput(sample=out) if return_dict else (out,)


def split_groups(prediction: torch.Tensor, frames_between: int) -> torch.Tensor:
    """(B, k*C, G, H, W) frame-major channels -> (B, C, G, k, H, W)."""
    return rearrange(prediction, "b (k c) g h w -> b c g k h w", k=frames_between)


def merge_groups(frames: torch.Tensor) -> torch.Tensor:
    """(B, C, G, k, H, W) -> (B, k*C, G, H, W), the inverse of :func:`split_groups`."""
    return rearrange(frames, "b c g k h w -> b (k c) g h w")


def interleave_keyframes(keyframes: torch.Tensor, between: torch.Tensor) -> torch.Tensor:
    """Keyframes (B, C, N, H, W) and in-between frames (B, C, N-1, k, H, W) -> video (B, C, (k+1)(N-1)+1, H, W).

    Keyframes land at indices i % (k+1) == 0, as in the released assembly (4N-3 frames for k=3).
    """
    groups = torch.cat([keyframes[:, :, :-1, None], between], dim=3)  # (B, C, N-1, k+1, H, W)
    video = rearrange(groups, "b c g k h w -> b c (g k) h w")
    return torch.cat([video, keyframes[:, :, -1:]], dim=2)
