"""Strict conversion of the published Kandinsky Video 1.0 U-Net checkpoints into our model classes.

Every size is inferred from tensor shapes, so tiny checkpoints in the original layout convert too. Two values
cannot be read off shapes and default to the real model's: ``groups`` (32) and ``attention_head_dim`` (64).
"""

import re
from collections.abc import Mapping

import torch

from ..models.unet_inpaint import Kandinsky3ConditionedUNet
from ..models.unet_interpolation import KandinskyVideoInterpolationUNet
from ..models.unet_keyframe import KandinskyVideoUNet
from .common import CheckpointMismatchError, check_state_dict

# Original Kandinsky 3 names -> diffusers Kandinsky3UNet names (applied in order, on the spatial part).
SPATIAL_RULES = [
    (r"^to_time_embed\.1\.", "time_embedding.linear_1."),
    (r"^to_time_embed\.3\.", "time_embedding.linear_2."),
    (r"^in_layer\.", "conv_in."),
    (r"^out_layer\.0\.", "conv_norm_out."),
    (r"^out_layer\.2\.", "conv_out."),
    (r"^feature_pooling\.", "add_time_condition."),
    (r"^down_samples\.", "down_blocks."),
    (r"^up_samples\.", "up_blocks."),
    (r"\.self_attention_block\.", ".attentions.0."),
    (r"\.resnet_attn_blocks\.(\d+)\.0\.", lambda m: f".resnets_in.{m[1]}."),
    (r"\.resnet_attn_blocks\.(\d+)\.1\.", lambda m: f".attentions.{int(m[1]) + 1}."),
    (r"\.resnet_attn_blocks\.(\d+)\.2\.", lambda m: f".resnets_out.{m[1]}."),
    (r"\.to_query\.", ".to_q."),
    (r"\.to_key\.", ".to_k."),
    (r"\.to_value\.", ".to_v."),
    (r"\.output_layer\.", ".to_out.0."),
]

# Temporal parts of the keyframe U-Net (released names -> ours), matched before the spatial rules.
KEYFRAME_TEMPORAL_RULES = [
    (r"^to_temporal_embed\.1\.", "frame_embedding.linear_1."),
    (r"^to_temporal_embed\.3\.", "frame_embedding.linear_2."),
    (r"^(down|up)_samples\.(\d+)\.temporal_attention_block\.temporal_attention\.to_(query|key|value)\.",
     lambda m: f"temporal_{m[1]}.{m[2]}.attention.attention.to_{m[3][0]}."),
    (r"^(down|up)_samples\.(\d+)\.temporal_attention_block\.temporal_attention\.output_layer\.",
     lambda m: f"temporal_{m[1]}.{m[2]}.attention.attention.to_out."),
    (r"^(down|up)_samples\.(\d+)\.temporal_attention_block\.", lambda m: f"temporal_{m[1]}.{m[2]}.attention."),
    (r"^(down|up)_samples\.(\d+)\.resnet_attn_blocks\.(\d+)\.([34])\.temporal_resnet_blocks\.(\d+)\.0\.",
     lambda m: f"temporal_{m[1]}.{m[2]}.resnets_{'in' if m[4] == '3' else 'out'}.{m[3]}.norms.{m[5]}."),
    (r"^(down|up)_samples\.(\d+)\.resnet_attn_blocks\.(\d+)\.([34])\.temporal_resnet_blocks\.(\d+)\.2\.",
     lambda m: f"temporal_{m[1]}.{m[2]}.resnets_{'in' if m[4] == '3' else 'out'}.{m[3]}.convs.{m[5]}."),
]

# New parts of the interpolation U-Net.
INTERPOLATION_RULES = [
    (r"^null_embedding$", "null_embedding"),  # stored beside the U-Net in the published file
    (r"^time_embed_merge$", "perturbation_merge"),
    (r"^skip_merge$", "skip_merge"),
    (r"^skip_embeddings\.", "skip_embedding."),
    (r"^perturbation_to_time_embed\.1\.", "perturbation_embedding.linear_1."),
    (r"^perturbation_to_time_embed\.3\.", "perturbation_embedding.linear_2."),
    (r"^(down|up)_samples\.(\d+)\.resnet_attn_blocks\.(\d+)\.([02])\.resnet_blocks\.(\d+)\.temporal_projection\.",
     lambda m: f"temporal_{m[1]}.{m[2]}.inner_{'in' if m[4] == '0' else 'out'}.{m[3]}.{m[5]}.conv."),
    (r"^(down|up)_samples\.(\d+)\.resnet_attn_blocks\.(\d+)\.([02])\.resnet_blocks\.(\d+)\.temporal_merge$",
     lambda m: f"temporal_{m[1]}.{m[2]}.inner_{'in' if m[4] == '0' else 'out'}.{m[3]}.{m[5]}.merge"),
]


def rename(key: str, temporal_rules: list) -> str:
    """Released key -> our key: a temporal rule if one matches, else the spatial rules under ``spatial.``."""
    for pattern, replacement in temporal_rules:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    for pattern, replacement in SPATIAL_RULES:
        key = re.sub(pattern, replacement, key)
    return "spatial." + key


def rename_state_dict(original: Mapping[str, torch.Tensor], temporal_rules: list) -> dict[str, torch.Tensor]:
    return {new_key: original[key] for new_key, key in source_names(original, temporal_rules).items()}


def source_names(original: Mapping[str, torch.Tensor], temporal_rules: list) -> dict[str, str]:
    """Our key -> the checkpoint's key, refusing two checkpoint keys that land on one of ours."""
    names: dict[str, str] = {}
    for key in original:
        new_key = rename(key, temporal_rules)
        if new_key in names:
            raise CheckpointMismatchError(f"checkpoint keys {names[new_key]} and {key} both map to {new_key}")
        names[new_key] = key
    return names


def _shape(original: Mapping[str, torch.Tensor], key: str) -> torch.Size:
    if key not in original:
        raise CheckpointMismatchError(f"cannot infer the U-Net config: the checkpoint has no {key!r}")
    return original[key].shape


def infer_spatial_config(original: Mapping[str, torch.Tensor], groups: int, attention_head_dim: int) -> dict:
    """Kandinsky 3 topology from tensor shapes (levels, widths, blocks per level, time and context widths)."""
    levels = sorted({int(m[1]) for key in original if (m := re.match(r"down_samples\.(\d+)\.", key))})
    layers = {int(m[1]) for key in original if (m := re.match(r"down_samples\.0\.resnet_attn_blocks\.(\d+)\.", key))}
    if not levels or not layers:
        raise CheckpointMismatchError("the checkpoint has no down_samples.* keys; is it a Kandinsky Video U-Net?")
    return dict(
        time_embedding_dim=_shape(original, "to_time_embed.1.weight")[0],
        groups=groups,
        attention_head_dim=attention_head_dim,
        layers_per_block=len(layers),
        block_out_channels=tuple(
            _shape(original, f"down_samples.{level}.resnet_attn_blocks.0.0.resnet_blocks.3.projection.weight")[0]
            for level in levels
        ),
        cross_attention_dim=_shape(original, "feature_pooling.attention.to_key.weight")[1],
    )


def convert_keyframe_unet(
    original: Mapping[str, torch.Tensor], groups: int = 32, attention_head_dim: int = 64
) -> KandinskyVideoUNet:
    """The ``unet`` entry of kandinsky_video.pt -> KandinskyVideoUNet (released Conv1dAttn1dBlocks layout)."""
    config = infer_spatial_config(original, groups, attention_head_dim)
    conv_shape = _shape(original, "down_samples.0.resnet_attn_blocks.0.3.temporal_resnet_blocks.1.2.weight")
    model = KandinskyVideoUNet(
        in_channels=_shape(original, "in_layer.weight")[1],
        temporal_conv="3d" if conv_shape[-1] == 3 else "1d",
        **config,
    )
    _load_strict(model, original, KEYFRAME_TEMPORAL_RULES, "keyframe U-Net checkpoint")
    return model


def convert_interpolation_unet(
    original: Mapping[str, torch.Tensor],
    null_embedding: torch.Tensor,
    groups: int = 32,
    attention_head_dim: int = 64,
) -> KandinskyVideoInterpolationUNet:
    """The ``unet`` + ``null_embedding`` entries of kandinsky_video_interpolation.pt -> our interpolation U-Net."""
    config = infer_spatial_config(original, groups, attention_head_dim)
    inputs = _shape(original, "in_layer.weight")[1]
    outputs = _shape(original, "out_layer.2.weight")[0]
    latent_channels = (inputs - outputs) // 2  # in = C*(k+2), out = C*k
    if latent_channels <= 0 or outputs % latent_channels:
        raise CheckpointMismatchError(f"in_layer takes {inputs} and out_layer gives {outputs} channels: not C*(k+2) -> C*k")
    model = KandinskyVideoInterpolationUNet(
        latent_channels=latent_channels,
        frames_between=outputs // latent_channels,
        num_skip_embeddings=_shape(original, "skip_embeddings.weight")[0],
        **config,
    )
    _load_strict(model, {**original, "null_embedding": null_embedding.reshape(-1)}, INTERPOLATION_RULES,
                 "interpolation U-Net checkpoint")
    return model


def convert_inpainting_unet(
    original: Mapping[str, torch.Tensor], groups: int = 32, attention_head_dim: int = 64
) -> Kandinsky3ConditionedUNet:
    """The ``unet`` entry of kandinsky3_inpainting.pt (Kandinsky 3.1) -> Kandinsky3ConditionedUNet (9 -> 4 channels)."""
    config = infer_spatial_config(original, groups, attention_head_dim)
    inputs, outputs = _shape(original, "in_layer.weight")[1], _shape(original, "out_layer.2.weight")[0]
    model = Kandinsky3ConditionedUNet(in_channels=outputs, condition_channels=inputs - outputs, **config)
    _load_strict(model, original, [], "inpainting U-Net checkpoint")
    return model


def _load_strict(model: torch.nn.Module, original: Mapping[str, torch.Tensor], rules: list, what: str) -> None:
    names = source_names(original, rules)
    renamed = {new_key: original[key] for new_key, key in names.items()}
    check_state_dict(renamed, model.state_dict(), what, names)
    model.load_state_dict(renamed, strict=True)
