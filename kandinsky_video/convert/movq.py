"""Strict converter from the published MoVQ checkpoint (``movq.pt``) to diffusers' :class:`~diffusers.VQModel`.

The release is a flat state dict in the taming-transformers layout (``encoder.down.{level}.block.{index}...``,
``decoder.up.{level}...``, ``decoder.mid.attn_1.q``); diffusers' ``VQModel`` with ``norm_type="spatial"`` is the same
network under other names. Every name is renamed by one table, :data:`_CONTAINERS` plus :data:`_INNER`, read in both
directions: original -> diffusers to convert, diffusers -> original to tell the user which *published* key is missing
or mis-shaped. The release ships no codebook (``quantize.embedding.weight``); Kandinsky decodes with
``force_not_quantize=True``, so the model keeps its own, unused, codebook.
"""

import os
import re
from collections.abc import Mapping

import torch
from diffusers import VQModel

from .common import CheckpointMismatchError, check_state_dict, load_original_checkpoint

CODEBOOK_KEY = "quantize.embedding.weight"

# (original module path, diffusers module path, kind, decoder level reversed?). {level} and {index} are integers.
# The original builds `decoder.up` from the highest level down and prepends, so its up[i] is diffusers'
# up_blocks[num_levels - 1 - i] (diffusers lists up blocks in execution order, lowest resolution first).
_CONTAINERS = (
    ("encoder.down.{level}.block.{index}", "encoder.down_blocks.{level}.resnets.{index}", "encoder_resnet", False),
    ("encoder.down.{level}.attn.{index}", "encoder.down_blocks.{level}.attentions.{index}", "encoder_attention", False),
    ("encoder.down.{level}.downsample", "encoder.down_blocks.{level}.downsamplers.0", "plain", False),
    ("encoder.mid.block_1", "encoder.mid_block.resnets.0", "encoder_resnet", False),
    ("encoder.mid.attn_1", "encoder.mid_block.attentions.0", "encoder_attention", False),
    ("encoder.mid.block_2", "encoder.mid_block.resnets.1", "encoder_resnet", False),
    ("encoder.norm_out.norm_layer", "encoder.conv_norm_out", "plain", False),
    ("decoder.mid.block_1", "decoder.mid_block.resnets.0", "decoder_resnet", False),
    ("decoder.mid.attn_1", "decoder.mid_block.attentions.0", "decoder_attention", False),
    ("decoder.mid.block_2", "decoder.mid_block.resnets.1", "decoder_resnet", False),
    ("decoder.up.{level}.block.{index}", "decoder.up_blocks.{level}.resnets.{index}", "decoder_resnet", True),
    ("decoder.up.{level}.attn.{index}", "decoder.up_blocks.{level}.attentions.{index}", "decoder_attention", True),
    ("decoder.up.{level}.upsample", "decoder.up_blocks.{level}.upsamplers.0", "plain", True),
    ("decoder.norm_out", "decoder.conv_norm_out", "plain", False),
)
# (original, diffusers) submodule names inside a container. Encoder norms are plain GroupNorms in diffusers; decoder
# SpatialNorms keep their norm_layer/conv_y/conv_b names. Attention q/k/v/proj_out are 1x1 convs in the original and
# Linear layers in diffusers (see _ATTENTION_LINEARS). Modules not listed (conv1, conv2, ...) keep their names, and so
# do the top-level conv_in/conv_out/quant_conv/post_quant_conv.
_INNER = {
    "plain": (),
    "encoder_resnet": (("norm1.norm_layer", "norm1"), ("norm2.norm_layer", "norm2"), ("nin_shortcut", "conv_shortcut")),
    "decoder_resnet": (("nin_shortcut", "conv_shortcut"),),
    "encoder_attention": (
        ("norm.norm_layer", "group_norm"),
        ("q", "to_q"),
        ("k", "to_k"),
        ("v", "to_v"),
        ("proj_out", "to_out.0"),
    ),
    "decoder_attention": (
        ("norm", "spatial_norm"),
        ("q", "to_q"),
        ("k", "to_k"),
        ("v", "to_v"),
        ("proj_out", "to_out.0"),
    ),
}
_ATTENTION_LINEARS = ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight")


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{level\}", r"(?P<level>\d+)").replace(r"\{index\}", r"(?P<index>\d+)")
    return re.compile(rf"^{pattern}\.(?P<rest>.+)$")


_REGEXES = {template: _template_regex(template) for row in _CONTAINERS for template in row[:2]}


def _rename(key: str, num_levels: int, to_diffusers: bool) -> tuple[str, bool]:
    """One key to the other layout; also says whether it is an attention q/k/v/out weight (1x1 conv <-> Linear)."""
    for original, diffusers, kind, reversed_level in _CONTAINERS:
        source, target = (original, diffusers) if to_diffusers else (diffusers, original)
        match = _REGEXES[source].match(key)
        if match is None:
            continue
        fields = {name: int(value) for name, value in match.groupdict().items() if name != "rest"}
        if reversed_level:
            fields["level"] = num_levels - 1 - fields["level"]
        source_rest = rest = match["rest"]
        for inner_original, inner_diffusers in _INNER[kind]:
            inner_source, inner_target = (
                (inner_original, inner_diffusers) if to_diffusers else (inner_diffusers, inner_original)
            )
            if rest.startswith(inner_source + "."):
                rest = inner_target + rest[len(inner_source) :]
                break
        diffusers_rest = rest if to_diffusers else source_rest
        is_linear = kind.endswith("attention") and diffusers_rest in _ATTENTION_LINEARS
        return f"{target.format(**fields)}.{rest}", is_linear
    return key, False


def _count_levels(keys, prefix: str) -> int:
    """1 + the largest N among keys ``{prefix}N.*`` (0 if none): the number of levels or blocks."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    levels = [int(match[1]) for match in map(pattern.match, keys) if match]
    return max(levels) + 1 if levels else 0


def convert_movq_state_dict(original: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a published MoVQ state dict to diffusers ``VQModel`` keys; attention 1x1 conv weights become Linear.

    Keys that match no rule keep their names, so :func:`check_state_dict` reports them as unexpected.
    """
    num_levels = _count_levels(original, "decoder.up.")
    converted = {}
    for key, tensor in original.items():
        new_key, is_linear = _rename(key, num_levels, to_diffusers=True)
        if is_linear and tensor.ndim == 4 and tensor.shape[2:] == (1, 1):
            tensor = tensor[:, :, 0, 0]  # (C_out, C_in, 1, 1) -> (C_out, C_in); other shapes are left for the check
        converted[new_key] = tensor
    return converted


def convert_movq_state_dict_to_original(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`convert_movq_state_dict`: diffusers ``VQModel`` keys to the published layout.

    Used to name expected keys in the published layout; it also exports weights for the released code.
    """
    num_levels = _count_levels(state_dict, "decoder.up_blocks.")
    original = {}
    for key, tensor in state_dict.items():
        new_key, is_linear = _rename(key, num_levels, to_diffusers=False)
        original[new_key] = tensor[:, :, None, None] if is_linear else tensor  # Linear -> 1x1 conv weight
    return original


def _shape(original: Mapping[str, torch.Tensor], key: str, why: str) -> torch.Size:
    if key not in original:
        raise CheckpointMismatchError(
            f"MoVQ checkpoint lacks {key!r}, needed to infer {why}; is it a complete published movq.pt state dict?"
        )
    return original[key].shape


def infer_movq_config(
    original: Mapping[str, torch.Tensor], norm_num_groups: int = 32, num_vq_embeddings: int = 16384
) -> dict:
    """Every ``VQModel`` config value of a published-layout MoVQ state dict, read from tensor names and shapes.

    Group counts leave no trace in shapes: the release uses 32 (its ``Normalize`` hard-codes it), hence the default.
    The codebook size only matters if the checkpoint has one (the release does not; it is unused when decoding with
    ``force_not_quantize=True``); 16384 is the real model's.
    """
    num_levels = _count_levels(original, "encoder.down.")
    if num_levels == 0:
        raise CheckpointMismatchError(
            f"no 'encoder.down.*' keys among {len(original)} keys (first: {sorted(original)[:3]}); "
            "expected a flat MoVQ state dict in the published (taming) layout"
        )
    if not any(key.startswith("decoder.") and ".conv_y." in key for key in original):
        raise CheckpointMismatchError(
            "the decoder has no spatial-norm keys ('decoder.*.conv_y.*'): this is not a MoVQ (spatial norm) checkpoint"
        )
    block_out_channels = [
        _shape(original, f"encoder.down.{level}.block.0.conv1.weight", "block_out_channels")[0]
        for level in range(num_levels)
    ]

    def has_attention(prefix: str) -> bool:
        return any(key.startswith(prefix) for key in original)

    if CODEBOOK_KEY in original:
        num_vq_embeddings = original[CODEBOOK_KEY].shape[0]
    return dict(
        in_channels=_shape(original, "encoder.conv_in.weight", "in_channels")[1],
        out_channels=_shape(original, "decoder.conv_out.weight", "out_channels")[0],
        down_block_types=[
            "AttnDownEncoderBlock2D" if has_attention(f"encoder.down.{level}.attn.") else "DownEncoderBlock2D"
            for level in range(num_levels)
        ],
        # diffusers' up_blocks[i] is the original decoder.up[num_levels - 1 - i]
        up_block_types=[
            "AttnUpDecoderBlock2D" if has_attention(f"decoder.up.{num_levels - 1 - i}.attn.") else "UpDecoderBlock2D"
            for i in range(num_levels)
        ],
        block_out_channels=block_out_channels,
        layers_per_block=_count_levels(original, "encoder.down.0.block."),
        act_fn="silu",
        latent_channels=_shape(original, "decoder.conv_in.weight", "latent_channels")[1],
        norm_num_groups=norm_num_groups,
        num_vq_embeddings=num_vq_embeddings,
        vq_embed_dim=_shape(original, "quant_conv.weight", "vq_embed_dim")[0],
        norm_type="spatial",
        mid_block_add_attention=has_attention("encoder.mid.attn_1.") or has_attention("decoder.mid.attn_1."),
    )


def load_movq_from_original(
    path: str | os.PathLike, norm_num_groups: int = 32, num_vq_embeddings: int = 16384
) -> VQModel:
    """Build a ``VQModel`` from the published ``movq.pt`` (or any checkpoint in its layout), strictly.

    Every key of the file must map to a model key with the same shape and every model key but the codebook must be
    present; otherwise :class:`CheckpointMismatchError` lists the offending keys under their published names.
    """
    original = load_original_checkpoint(path)
    if not isinstance(original, Mapping) or not all(isinstance(value, torch.Tensor) for value in original.values()):
        raise CheckpointMismatchError(f"{path!s} is not a flat state dict of tensors (like the published movq.pt)")
    config = infer_movq_config(original, norm_num_groups=norm_num_groups, num_vq_embeddings=num_vq_embeddings)
    try:
        model = VQModel(**config)
    except Exception as error:  # e.g. widths that are not multiples of the group count
        raise CheckpointMismatchError(
            f"cannot build a VQModel from {path!s} (inferred config {config}): {error}"
        ) from error
    expected = dict(model.state_dict())
    own_codebook = {CODEBOOK_KEY: expected[CODEBOOK_KEY]} if CODEBOOK_KEY not in original else {}
    expected = {key: value for key, value in expected.items() if key not in own_codebook}
    check_state_dict(original, convert_movq_state_dict_to_original(expected), what=f"MoVQ checkpoint {path!s}")
    converted = convert_movq_state_dict(original)
    model.load_state_dict({**converted, **own_codebook}, strict=True)
    return model.eval()
