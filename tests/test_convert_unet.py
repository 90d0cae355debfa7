"""The U-Net converter against the released code and against the reference facts computed by hand.

``tests/data/unet_reference.safetensors`` holds tiny U-Nets built and run by the released Kandinsky Video 1.0 code
(recipe: ``tests/data/make_unet_reference.py``): their original-layout state dicts, inputs and outputs.
"""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from kandinsky_video.convert.common import CheckpointMismatchError, check_state_dict
from kandinsky_video.convert.unet import (
    INTERPOLATION_RULES,
    KEYFRAME_TEMPORAL_RULES,
    convert_interpolation_unet,
    convert_keyframe_unet,
    rename_state_dict,
)
from kandinsky_video.models.unet_interpolation import KandinskyVideoInterpolationUNet
from kandinsky_video.models.unet_keyframe import KandinskyVideoUNet

DATA = Path(__file__).parent / "data"
KEYS = Path(__file__).parents[2] / "shared" / "reference" / "original-keys"
FRAMES, GROUPS, SIZE, HEAD_DIM, NORM_GROUPS = 5, 3, 16, 4, 2


@pytest.fixture(scope="module")
def reference():
    return load_file(DATA / "unet_reference.safetensors")


def original(reference, model: str) -> dict[str, torch.Tensor]:
    prefix = f"{model}.state_dict."
    return {key[len(prefix):]: value for key, value in reference.items() if key.startswith(prefix)}


def test_keyframe_unet_reproduces_the_released_code(reference):
    model = convert_keyframe_unet(original(reference, "keyframe"), groups=NORM_GROUPS, attention_head_dim=HEAD_DIM)
    # Released inputs are folded (b t); ours are (B, C, T, H, W) with one time and one context per video.
    x = reference["keyframe.x"].unflatten(0, (2, FRAMES)).transpose(1, 2)
    with torch.no_grad():
        out = model.eval()(
            x,
            reference["keyframe.time"][::FRAMES],
            reference["keyframe.context"][::FRAMES],
            reference["keyframe.mask"][::FRAMES],
            reference["keyframe.positions"][:FRAMES],
        ).sample
    expected = reference["keyframe.out"].unflatten(0, (2, FRAMES)).transpose(1, 2)
    torch.testing.assert_close(out, expected, atol=2e-4, rtol=1e-4)


def test_interpolation_unet_reproduces_the_released_code(reference):
    model = convert_interpolation_unet(
        original(reference, "interpolation"),
        reference["interpolation.null_embedding"],
        groups=NORM_GROUPS,
        attention_head_dim=HEAD_DIM,
    )
    assert model.config.frames_between == 3 and model.config.latent_channels == 4
    with torch.no_grad():
        out = model.eval()(
            reference["interpolation.noisy"].transpose(1, 2),  # (B, G, 12, H, W) -> (B, 12, G, H, W)
            reference["interpolation.keyframes"].transpose(1, 2),
            reference["interpolation.time"][::GROUPS],
            skip=reference["interpolation.skip"][::GROUPS],
        ).sample
    expected = reference["interpolation.out"].unflatten(0, (2, GROUPS)).transpose(1, 2)
    torch.testing.assert_close(out, expected, atol=2e-4, rtol=1e-4)


def published_keys(name: str) -> dict[str, torch.Tensor]:
    lines = (KEYS / f"{name}.tsv").read_text().splitlines()[1:]
    return {key: torch.empty(eval(shape), device="meta") for key, shape in (line.split("\t") for line in lines)}


@pytest.mark.skipif(not KEYS.is_dir(), reason="needs ../shared/reference/original-keys")
def test_every_published_key_maps_onto_the_full_size_models():
    with torch.device("meta"):
        keyframe, interpolation = KandinskyVideoUNet(), KandinskyVideoInterpolationUNet()
    check_state_dict(rename_state_dict(published_keys("keyframe_unet"), KEYFRAME_TEMPORAL_RULES), keyframe.state_dict(), "keyframe")
    published = {**published_keys("interpolation_unet"), "null_embedding": torch.empty(4096, device="meta")}
    renamed = rename_state_dict(published, INTERPOLATION_RULES)
    check_state_dict(renamed, interpolation.state_dict(), "interpolation")


# ---- the new parts, computed directly from the original tensors and the reference facts ------------------------


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    frequencies = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
    angles = positions.float()[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def mlp(tensors, prefix, x):
    """Released to_*_embed: Linear -> SiLU -> Linear (keys .1 and .3)."""
    x = F.linear(x, tensors[f"{prefix}.1.weight"], tensors[f"{prefix}.1.bias"])
    return F.linear(F.silu(x), tensors[f"{prefix}.3.weight"], tensors[f"{prefix}.3.bias"])


def conditional_norm(tensors, prefix, x, condition):
    """Kandinsky 3 ConditionalGroupNorm: GroupNorm without affine, x * (1 + scale) + shift from SiLU -> Linear."""
    scale, shift = F.linear(F.silu(condition), tensors[f"{prefix}.context_mlp.1.weight"],
                            tensors[f"{prefix}.context_mlp.1.bias"]).chunk(2, dim=1)
    return F.group_norm(x, NORM_GROUPS) * (1 + scale[..., None, None]) + shift[..., None, None]


def temporal_resnet_reference(tensors, prefix, x, time_embed):
    out = x  # (B*T, C, H, W)
    for j in range(4):
        out = F.silu(conditional_norm(tensors, f"{prefix}.temporal_resnet_blocks.{j}.0", out, time_embed))
        weight, bias = tensors[f"{prefix}.temporal_resnet_blocks.{j}.2.weight"], tensors[f"{prefix}.temporal_resnet_blocks.{j}.2.bias"]
        video = out.unflatten(0, (-1, FRAMES)).transpose(1, 2)  # (B, C, T, H, W)
        out = F.conv3d(video, weight, bias, padding=(weight.shape[2] // 2, 0, 0)).transpose(1, 2).flatten(0, 1)
    return x + out


def temporal_attention_reference(tensors, prefix, x, time_embed, frame_embed):
    bt, channels, height, width = x.shape
    heads = channels // HEAD_DIM
    h = conditional_norm(tensors, f"{prefix}.in_norm", x, frame_embed)
    tokens = h.unflatten(0, (-1, FRAMES)).permute(0, 3, 4, 1, 2).reshape(-1, FRAMES, channels)  # (B*H*W, T, C)

    def project(name):
        return F.linear(tokens, tensors[f"{prefix}.temporal_attention.{name}.weight"]).unflatten(-1, (heads, HEAD_DIM)).transpose(1, 2)

    q, k, v = project("to_query"), project("to_key"), project("to_value")
    attention = (q @ k.transpose(-1, -2) * HEAD_DIM**-0.5).softmax(-1) @ v
    out = F.linear(attention.transpose(1, 2).flatten(2), tensors[f"{prefix}.temporal_attention.output_layer.weight"])
    out = out.reshape(-1, height, width, FRAMES, channels).permute(0, 3, 4, 1, 2).flatten(0, 1)
    x = x + out
    h = conditional_norm(tensors, f"{prefix}.out_norm", x, time_embed)
    h = F.conv2d(F.silu(F.conv2d(h, tensors[f"{prefix}.feed_forward.0.weight"])), tensors[f"{prefix}.feed_forward.2.weight"])
    return x + h


def test_new_keyframe_parts_match_a_direct_computation(reference):
    tensors = original(reference, "keyframe")
    model = convert_keyframe_unet(tensors, groups=NORM_GROUPS, attention_head_dim=HEAD_DIM).eval()
    generator = torch.Generator().manual_seed(3)
    time_embed = torch.randn(2 * FRAMES, 8, generator=generator)
    positions = torch.arange(FRAMES).repeat(2) * 12
    with torch.no_grad():
        frame_embed = mlp(tensors, "to_temporal_embed", sinusoid(positions, 4))
        torch.testing.assert_close(model.frame_embedding(model.frame_proj(positions)), frame_embed)
        for direction, level, triplet, slot in [("down", 1, 0, 3), ("down", 2, 1, 4), ("up", 1, 0, 3), ("up", 2, 1, 4)]:
            prefix = f"{direction}_samples.{level}.resnet_attn_blocks.{triplet}.{slot}"
            channels = tensors[f"{prefix}.temporal_resnet_blocks.0.2.weight"].shape[1]
            x = torch.randn(2 * FRAMES, channels, 4, 4, generator=generator)
            block = getattr(model, f"temporal_{direction}")[level]
            ours = (block.resnets_in if slot == 3 else block.resnets_out)[triplet]
            torch.testing.assert_close(ours(x, time_embed, FRAMES), temporal_resnet_reference(tensors, prefix, x, time_embed))
        for direction, level in [("down", 1), ("up", 2)]:
            prefix = f"{direction}_samples.{level}.temporal_attention_block"
            channels = tensors[f"{prefix}.feed_forward.2.weight"].shape[0]
            x = torch.randn(2 * FRAMES, channels, 4, 4, generator=generator)
            ours = getattr(model, f"temporal_{direction}")[level].attention(x, time_embed, frame_embed, FRAMES)
            torch.testing.assert_close(ours, temporal_attention_reference(tensors, prefix, x, time_embed, frame_embed))


def test_new_interpolation_parts_match_a_direct_computation(reference):
    tensors = original(reference, "interpolation")
    model = convert_interpolation_unet(
        tensors, reference["interpolation.null_embedding"], groups=NORM_GROUPS, attention_head_dim=HEAD_DIM
    ).eval()
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        # Convex temporal projection over the group axis, after a Block's conv.
        prefix = "up_samples.1.resnet_attn_blocks.0.2.resnet_blocks.1"
        channels = tensors[f"{prefix}.temporal_projection.weight"].shape[0]
        x = torch.randn(2 * GROUPS, channels, 4, 4, generator=generator)
        alpha = tensors[f"{prefix}.temporal_merge"]
        conv = F.conv3d(x.unflatten(0, (2, GROUPS)).transpose(1, 2), tensors[f"{prefix}.temporal_projection.weight"],
                        tensors[f"{prefix}.temporal_projection.bias"], padding=(1, 0, 0)).transpose(1, 2).flatten(0, 1)
        torch.testing.assert_close(model.temporal_up[1].inner_out[0][1](x, GROUPS), (1 - alpha) * x + alpha * conv)

        # Skip and perturbation conditioning, captured where the first norm of the U-Net receives the time embedding.
        captured = []
        norm = model.spatial.down_blocks[0].resnets_in[0].resnet_blocks[0].group_norm
        handle = norm.register_forward_pre_hook(lambda module, args: captured.append(args[1]))
        keyframes = torch.randn(2, 4, GROUPS + 1, 8, 8, generator=generator)
        sample = torch.randn(2, 12, GROUPS, 8, 8, generator=generator)
        model(sample, keyframes, torch.tensor([500, 40]), skip=torch.tensor([3, 1]), perturbation=torch.tensor([0, 250]))
        base = model._time_embedding(torch.tensor([500.0, 40.0]), *_null(model))
        handle.remove()
        beta, gamma = tensors["time_embed_merge"], tensors["skip_merge"]
        expected = beta * mlp(tensors, "perturbation_to_time_embed", sinusoid(torch.tensor([0, 250]), 4)) + (1 - beta) * base
        expected = expected + gamma * tensors["skip_embeddings.weight"][torch.tensor([3, 1])]
        torch.testing.assert_close(captured[0], expected.repeat_interleave(GROUPS, 0))


def _null(model):
    from kandinsky_video.models.kandinsky3_walk import attention_mask_bias

    context, mask = model.null_context(2, torch.float32)
    return context, attention_mask_bias(mask, torch.float32)


# ---- errors ------------------------------------------------------------------------------------------------------


def test_bad_checkpoints_name_the_offending_key(reference):
    tensors = original(reference, "keyframe")
    kwargs = dict(groups=NORM_GROUPS, attention_head_dim=HEAD_DIM)
    missing = dict(tensors)
    del missing["down_samples.1.temporal_attention_block.temporal_attention.to_key.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"missing \(1\):\n    temporal_down\.1\.attention\.attention\.to_k\.weight"):
        convert_keyframe_unet(missing, **kwargs)
    extra = {**tensors, "down_samples.0.mystery.weight": torch.zeros(1)}
    with pytest.raises(CheckpointMismatchError, match=r"unexpected \(1\):\n    down_samples\.0\.mystery\.weight \(-> spatial"):
        convert_keyframe_unet(extra, **kwargs)
    shaped = {**tensors, "to_temporal_embed.3.bias": torch.zeros(9)}
    with pytest.raises(CheckpointMismatchError, match=r"to_temporal_embed\.3\.bias \(-> frame_embedding\.linear_2\.bias\): checkpoint \(9,\) vs model \(8,\)"):
        convert_keyframe_unet(shaped, **kwargs)
    with pytest.raises(CheckpointMismatchError, match="down_samples"):
        convert_keyframe_unet({"in_layer.weight": torch.zeros(4, 4, 3, 3)}, **kwargs)
    with pytest.raises(CheckpointMismatchError, match="C\\*\\(k\\+2\\)"):
        interpolation = dict(original(reference, "interpolation"))
        interpolation["out_layer.2.weight"] = torch.zeros(20, 4, 3, 3)
        convert_interpolation_unet(interpolation, torch.zeros(8), **kwargs)
