"""MoVQ Video: the Kandinsky image MoVQ with temporal layers in its decoder (paper section on the video decoder).

The image autoencoder is diffusers' ``VQModel`` (``norm_type="spatial"``, i.e. MoVQ), kept whole as the submodule
``movq`` so that image-MoVQ weights load into it unchanged. The new layers live apart, under ``temporal``, and sit
only in the decoder:

- in every decoder ResNet block (mid block and up blocks), after ``conv1`` and after ``conv2``, a Conv3d over
  (time, height, width) blended in convexly, ``h = (1 - a) h + a conv3d(h)``, with a scalar ``a`` (the layout of the
  Kandinsky Video 1.1 decoder);
- after every decoder spatial attention, a temporal attention: spatial norm on the latent -> q/k/v -> attention over
  the T frames at each pixel -> output projection -> residual.

Every temporal layer starts as the identity (zero Conv3d, ``a = 0``, zero output projection), so a fresh MoVQ Video
decodes each frame exactly like the image MoVQ. The encoder is the image encoder, unchanged (and meant to stay
frozen). Because the temporal layers must sit *between* the submodules of diffusers' ResNet blocks, the decoder
forward below walks diffusers' modules itself instead of calling ``Decoder.forward``.
"""

import inspect
import json
import os
from functools import partial

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, VQModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import SpatialNorm
from diffusers.utils.accelerate_utils import apply_forward_hook
from einops import rearrange
from torch import nn

from .frames import fold_frames, frames_to_sequences, sequences_to_frames, unfold_frames
from .temporal_layers import ConvexTemporalConv

# The Kandinsky 3.0 MoVQ (kandinsky-community/kandinsky-3, subfolder movq; the published movq.pt of Kandinsky Video).
KANDINSKY3_MOVQ_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
    up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
    block_out_channels=[256, 512, 512, 1024],
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    num_vq_embeddings=16384,
    vq_embed_dim=4,
    norm_type="spatial",
)


class TemporalResnetLayers(nn.Module):
    """The two temporal convs of one decoder ResNet block: after its ``conv1`` and after its ``conv2``."""

    def __init__(self, conv1_channels: int, conv2_channels: int, kernel_size: tuple[int, int, int]):
        super().__init__()
        self.after_conv1 = ConvexTemporalConv(conv1_channels, kernel_size)
        self.after_conv2 = ConvexTemporalConv(conv2_channels, kernel_size)


class TemporalAttention(nn.Module):
    """Attention over the frames at each pixel, normalised like MoVQ's spatial attention (SpatialNorm on the latent).

    No positional encoding: frame order reaches it through the temporal convs. The output projection starts at zero,
    so the block starts as the identity.
    """

    def __init__(self, channels: int, latent_channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = SpatialNorm(channels, latent_channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, frames: torch.Tensor, zq: torch.Tensor, num_frames: int) -> torch.Tensor:
        """frames (B*T, C, H, W), zq (B*T, latent_channels, h, w) -> (B*T, C, H, W)."""
        height, width = frames.shape[-2:]
        tokens = frames_to_sequences(self.norm(frames, zq), num_frames)  # (B*H*W, T, C)
        q, k, v = (
            rearrange(project(tokens), "n t (heads d) -> n heads t d", heads=self.heads)
            for project in (self.to_q, self.to_k, self.to_v)
        )
        attended = rearrange(F.scaled_dot_product_attention(q, k, v), "n heads t d -> n t (heads d)")
        return frames + sequences_to_frames(self.to_out(attended), height, width)


class TemporalBlockLayers(nn.Module):
    """Temporal layers of one decoder block, indexed like the block's ``resnets`` and ``attentions``."""

    def __init__(self, resnets: nn.ModuleList, attention_channels: list[int], latent_channels: int, config: dict):
        super().__init__()
        kernel_size = tuple(config["temporal_kernel_size"])
        self.resnets = nn.ModuleList(
            TemporalResnetLayers(resnet.conv1.out_channels, resnet.conv2.out_channels, kernel_size)
            for resnet in resnets
        )
        heads = config["temporal_attention_heads"]
        self.attentions = nn.ModuleList(
            TemporalAttention(channels, latent_channels, heads)
            for channels in (attention_channels if config["temporal_attention"] else [])
        )


class TemporalDecoderLayers(nn.Module):
    """All temporal layers, named like the diffusers decoder blocks they extend (``mid_block``, ``up_blocks.N``)."""

    def __init__(self, decoder: nn.Module, config: dict):
        super().__init__()
        latent_channels = decoder.conv_norm_out.conv_y.in_channels
        self.mid_block = TemporalBlockLayers(
            decoder.mid_block.resnets, _attention_channels(decoder.mid_block), latent_channels, config
        )
        self.up_blocks = nn.ModuleList(
            TemporalBlockLayers(block.resnets, _attention_channels(block), latent_channels, config)
            for block in decoder.up_blocks
        )


def _attention_channels(block: nn.Module) -> list[int]:
    """Widths of a block's spatial attentions; [] when it has none (UpDecoderBlock2D, mid_block_add_attention=False)."""
    attentions = getattr(block, "attentions", None) or []
    if any(attention is None for attention in attentions):
        return []
    return [attention.to_q.in_features for attention in attentions]


# Adapted from diffusers.models.resnet.ResnetBlockCondNorm2D.forward (spatial norm, no up/down-sampling), with the
# temporal convs after conv1 and conv2.
def _resnet_forward(
    resnet: nn.Module, temporal: TemporalResnetLayers, hidden: torch.Tensor, zq: torch.Tensor, num_frames: int
) -> torch.Tensor:
    """hidden (B*T, C_in, H, W) -> (B*T, C_out, H, W)."""
    shortcut = hidden
    hidden = resnet.nonlinearity(resnet.norm1(hidden, zq))
    hidden = temporal.after_conv1(resnet.conv1(hidden), num_frames)
    hidden = resnet.nonlinearity(resnet.norm2(hidden, zq))
    hidden = temporal.after_conv2(resnet.conv2(resnet.dropout(hidden)), num_frames)
    if resnet.conv_shortcut is not None:
        shortcut = resnet.conv_shortcut(shortcut)
    return (shortcut + hidden) / resnet.output_scale_factor


class MoVQVideo(ModelMixin, ConfigMixin):
    r"""Kandinsky MoVQ with a temporal decoder: encodes videos frame by frame, decodes them jointly over time.

    Args:
        movq_config: config of the image ``VQModel`` (must be MoVQ: ``norm_type="spatial"``); ``None`` for the
            Kandinsky 3.0 MoVQ (:data:`KANDINSKY3_MOVQ_CONFIG`).
        temporal_kernel_size: (time, height, width) kernel of the temporal convs, odd sizes; the paper compares
            (3, 1, 1) and (3, 3, 3), its best decoder uses (3, 3, 3).
        temporal_attention: add temporal attention after every decoder spatial attention.
        temporal_attention_heads: heads of the temporal attention (MoVQ's spatial attention uses 1).
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        movq_config: dict | None = None,
        temporal_kernel_size: tuple[int, int, int] = (3, 3, 3),
        temporal_attention: bool = True,
        temporal_attention_heads: int = 1,
    ):
        super().__init__()
        if movq_config is not None and not isinstance(movq_config, dict):
            raise ValueError(f"movq_config must be a dict of VQModel arguments (or None), got {type(movq_config)}")
        movq_config = _plain(KANDINSKY3_MOVQ_CONFIG if movq_config is None else movq_config)
        kernel_size = list(temporal_kernel_size) if isinstance(temporal_kernel_size, (list, tuple)) else []
        if len(kernel_size) != 3 or not all(isinstance(size, int) and size > 0 and size % 2 for size in kernel_size):
            raise ValueError(
                f"temporal_kernel_size must be 3 odd positive ints (time, height, width), e.g. (3, 1, 1) or (3, 3, 3); "
                f"got {temporal_kernel_size!r}"
            )
        if not isinstance(temporal_attention_heads, int) or temporal_attention_heads < 1:
            raise ValueError(f"temporal_attention_heads must be a positive int, got {temporal_attention_heads!r}")
        _check_movq_config(movq_config)
        # JSON-native values, so that the config is identical after save_pretrained/from_pretrained.
        self.register_to_config(movq_config=movq_config, temporal_kernel_size=kernel_size)

        self.movq = VQModel(**movq_config)
        for block in [self.movq.decoder.mid_block, *self.movq.decoder.up_blocks]:
            for channels in _attention_channels(block):
                if temporal_attention and channels % temporal_attention_heads:
                    raise ValueError(
                        f"temporal_attention_heads={temporal_attention_heads} does not divide the attention width "
                        f"{channels}; choose a divisor of it"
                    )
            assert all(resnet.upsample is None and resnet.downsample is None for resnet in block.resnets)
        self.temporal = TemporalDecoderLayers(self.movq.decoder, self.config)
        self.gradient_checkpointing = False

    # ----------------------------------------------------------------------------------------------------------------
    # Construction and training helpers

    @classmethod
    def from_movq(
        cls, movq: VQModel | str | os.PathLike, subfolder: str | None = None, **temporal_config
    ) -> "MoVQVideo":
        """A MoVQ Video whose image layers are ``movq``'s (bit-identical) and whose temporal layers are fresh.

        ``movq`` is a ``VQModel`` or a diffusers folder / hub id holding one, e.g.
        ``from_movq("kandinsky-community/kandinsky-3", subfolder="movq")``. ``temporal_config`` takes the temporal
        arguments of :class:`MoVQVideo` (``temporal_kernel_size``, ``temporal_attention``, ...). The result has
        ``movq``'s device and dtype.
        """
        if "movq_config" in temporal_config:
            raise ValueError("from_movq takes the image config from `movq`; do not pass movq_config")
        if not isinstance(movq, VQModel):
            movq = VQModel.from_pretrained(movq, subfolder=subfolder)
        elif subfolder is not None:
            raise ValueError("subfolder only applies when `movq` is a path or hub id, not a VQModel instance")
        model = cls(movq_config=dict(movq.config), **temporal_config)
        model.movq.load_state_dict(movq.state_dict(), strict=True)
        model.to(movq.device)
        return model if movq.dtype == model.dtype else model.to(dtype=movq.dtype)

    def temporal_parameters(self) -> list[nn.Parameter]:
        """The parameters MoVQ Video adds to the image MoVQ (all under ``temporal.``)."""
        return list(self.temporal.parameters())

    def freeze_image_layers(self, train_decoder: bool = False) -> None:
        """Train the temporal layers only, or with ``train_decoder=True`` the whole decoder; the encoder stays frozen.

        The paper's decoder study trains temporal layers alone or the whole decoder, always with a frozen encoder
        (latents of the keyframe and interpolation models must keep their meaning). ``train_decoder`` also trains
        ``post_quant_conv``, which belongs to the decoding path; the codebook (unused) stays frozen.
        """
        self.movq.requires_grad_(False)
        if train_decoder:
            self.movq.decoder.requires_grad_(True)
            self.movq.post_quant_conv.requires_grad_(True)
        self.temporal.requires_grad_(True)

    # ----------------------------------------------------------------------------------------------------------------
    # Encoding and decoding

    @apply_forward_hook
    def encode(self, video: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> latents (B, 4, T, H/8, W/8): the image encoder + quant_conv per frame.

        No quantisation and no scaling factor (the Kandinsky path). ``chunk_size`` frames are encoded at a time
        (``None``: all); frames are independent here, so chunking only changes memory.
        """
        self._check_video(video)
        self._check_chunk_size(chunk_size)
        num_frames = video.shape[2]
        chunks = []
        for start in range(0, num_frames, chunk_size or num_frames):
            chunk = video[:, :, start : start + (chunk_size or num_frames)]  # (B, 3, t, H, W)
            latents = self.movq.quant_conv(self.movq.encoder(fold_frames(chunk)))  # (B*t, 4, H/8, W/8)
            chunks.append(unfold_frames(latents, chunk.shape[2]))
        return torch.cat(chunks, dim=2)

    @apply_forward_hook
    def decode(self, latents: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Latents (B, 4, T, h, w) -> video (B, 3, T, 8h, 8w), about [-1, 1] but NOT clipped (clip or map yourself).

        ``chunk_size`` frames are decoded at a time (``None``: all at once), so long videos fit in memory. The
        temporal layers see only the frames of their chunk (each chunk is decoded as a clip of its own), so with
        trained temporal layers the result depends on ``chunk_size``; Kandinsky Video 1.0 decoded in chunks of T//4.
        """
        self._check_latents(latents)
        self._check_chunk_size(chunk_size)
        num_frames = latents.shape[2]
        chunks = []
        for start in range(0, num_frames, chunk_size or num_frames):
            chunk = latents[:, :, start : start + (chunk_size or num_frames)]  # (B, 4, t, h, w)
            frames = self._decode_frames(fold_frames(chunk), chunk.shape[2])  # (B*t, 3, 8h, 8w)
            chunks.append(unfold_frames(frames, chunk.shape[2]))
        return torch.cat(chunks, dim=2)

    def forward(self, latents: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Same as :meth:`decode`; the trainable path (latents of the frozen encoder can be cached)."""
        return self.decode(latents, chunk_size=chunk_size)

    def _decode_frames(self, zq: torch.Tensor, num_frames: int) -> torch.Tensor:
        """zq (B*T, 4, h, w) -> (B*T, 3, 8h, 8w), like ``VQModel.decode(zq, force_not_quantize=True)`` per frame.

        Follows diffusers' ``Decoder.forward`` for the spatial norm: every norm is conditioned on ``zq``, the
        unquantised latent itself.
        """
        decoder = self.movq.decoder
        hidden = decoder.conv_in(self.movq.post_quant_conv(zq))  # (B*T, C_last, h, w)
        blocks = [self._mid_block] + [partial(self._up_block, index) for index in range(len(decoder.up_blocks))]
        for block in blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden = self._gradient_checkpointing_func(block, hidden, zq, num_frames)
            else:
                hidden = block(hidden, zq, num_frames)
        hidden = decoder.conv_act(decoder.conv_norm_out(hidden, zq))
        return decoder.conv_out(hidden)

    def _mid_block(self, hidden: torch.Tensor, zq: torch.Tensor, num_frames: int) -> torch.Tensor:
        # Adapted from diffusers' UNetMidBlock2D.forward: resnet, then (attention, resnet) pairs.
        block, temporal = self.movq.decoder.mid_block, self.temporal.mid_block
        hidden = _resnet_forward(block.resnets[0], temporal.resnets[0], hidden, zq, num_frames)
        for index, (attention, resnet) in enumerate(zip(block.attentions, block.resnets[1:])):
            if attention is not None:
                hidden = attention(hidden, temb=zq)
                if len(temporal.attentions):
                    hidden = temporal.attentions[index](hidden, zq, num_frames)
            hidden = _resnet_forward(resnet, temporal.resnets[index + 1], hidden, zq, num_frames)
        return hidden

    def _up_block(self, index: int, hidden: torch.Tensor, zq: torch.Tensor, num_frames: int) -> torch.Tensor:
        # Adapted from diffusers' (Attn)UpDecoderBlock2D.forward: resnet (+ attention) per layer, then upsampling.
        block, temporal = self.movq.decoder.up_blocks[index], self.temporal.up_blocks[index]
        attentions = getattr(block, "attentions", None) or []
        for layer, resnet in enumerate(block.resnets):
            hidden = _resnet_forward(resnet, temporal.resnets[layer], hidden, zq, num_frames)
            if attentions:
                hidden = attentions[layer](hidden, temb=zq)
                if len(temporal.attentions):
                    hidden = temporal.attentions[layer](hidden, zq, num_frames)
        for upsampler in block.upsamplers or []:
            hidden = upsampler(hidden)  # (B*T, C, 2H, 2W)
        return hidden

    # ----------------------------------------------------------------------------------------------------------------
    # Input checks

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent along height and width (8 for MoVQ)."""
        return 2 ** (len(self.movq.config.block_out_channels) - 1)

    def _check_video(self, video: torch.Tensor) -> None:
        channels, factor = self.movq.config.in_channels, self.spatial_compression
        if video.ndim != 5 or video.shape[1] != channels:
            raise ValueError(
                f"video must be (B, {channels}, T, H, W), got shape {tuple(video.shape)}; for a frame batch "
                "(B*T, C, H, W) use kandinsky_video.models.frames.unfold_frames first"
            )
        if video.shape[-2] % factor or video.shape[-1] % factor or video.shape[2] == 0:
            raise ValueError(
                f"video height and width must be multiples of {factor} and T >= 1, got shape {tuple(video.shape)}; "
                "resize or crop the frames"
            )

    def _check_latents(self, latents: torch.Tensor) -> None:
        channels = self.movq.post_quant_conv.in_channels
        if latents.ndim != 5 or latents.shape[1] != channels:
            raise ValueError(
                f"latents must be (B, {channels}, T, h, w), got shape {tuple(latents.shape)}; for a frame batch "
                "(B*T, C, h, w) use kandinsky_video.models.frames.unfold_frames first"
            )
        if 0 in latents.shape:
            raise ValueError(f"latents have an empty dimension: shape {tuple(latents.shape)}")

    @staticmethod
    def _check_chunk_size(chunk_size: int | None) -> None:
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive int (frames per chunk) or None (all), got {chunk_size!r}")


def _plain(config: dict) -> dict:
    """A config as JSON would give it back (lists, no private `_` keys), so saved and loaded configs compare equal."""
    return json.loads(json.dumps({key: value for key, value in dict(config).items() if not key.startswith("_")}))


def _check_movq_config(config: dict) -> None:
    known = set(inspect.signature(VQModel.__init__).parameters) - {"self"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"movq_config has keys VQModel does not take: {unknown}; valid keys: {sorted(known)}")
    if config.get("norm_type") != "spatial":
        raise ValueError(
            "MoVQ Video needs a MoVQ, i.e. a VQModel with norm_type='spatial'; "
            f"got norm_type={config.get('norm_type')!r}"
        )
    if config.get("lookup_from_codebook"):
        raise ValueError("lookup_from_codebook=True is not supported: Kandinsky decodes continuous latents")
