"""MoVQ Video (image MoVQ + temporal decoder layers) and the strict converter of the published movq.pt."""

from pathlib import Path

import pytest
import torch
from diffusers import VQModel
from safetensors.torch import load_file

from kandinsky_video.convert.common import CheckpointMismatchError
from kandinsky_video.convert.movq import (
    CODEBOOK_KEY,
    convert_movq_state_dict,
    convert_movq_state_dict_to_original,
    infer_movq_config,
    load_movq_from_original,
)
from kandinsky_video.models.frames import fold_frames, unfold_frames
from kandinsky_video.models.movq_video import KANDINSKY3_MOVQ_CONFIG, MoVQVideo
from kandinsky_video.testing import randomize_zero_parameters, tiny_movq

REFERENCE = Path(__file__).parent / "data" / "movq_reference.safetensors"  # recipe: data/make_movq_reference.py
# Port vs released code at float32: the attention kernels differ (bmm+softmax vs SDPA), hence rtol on top of ~1e-5.
PORT_TOLERANCE = dict(atol=1e-5, rtol=1e-4)
# Same math, other batch size (B*T frames vs chunks vs one frame): CPU conv kernels may round differently (~3e-6).
SAME_MATH = dict(atol=1e-5, rtol=1e-5)


def seeded(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def image_decode_per_frame(movq: VQModel, latents: torch.Tensor) -> torch.Tensor:
    """The image MoVQ's decode, one frame at a time: (B, 4, T, h, w) -> (B, 3, T, H, W)."""
    frames = [movq.decode(latents[:, :, t], force_not_quantize=True).sample for t in range(latents.shape[2])]
    return torch.stack(frames, dim=2)


def randomized_video_model(seed: int = 0, **temporal_config) -> MoVQVideo:
    """A tiny MoVQ Video whose temporal layers are no longer the identity."""
    model = MoVQVideo.from_movq(tiny_movq(seed), **temporal_config).eval()
    randomize_zero_parameters(model.temporal, seed)
    return model


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(REFERENCE)


@pytest.fixture(scope="module")
def original_state_dict(reference) -> dict[str, torch.Tensor]:
    return {key.removeprefix("state_dict."): value for key, value in reference.items() if key.startswith("state_dict.")}


# (a) identity at init ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "temporal_config",
    [{}, {"temporal_kernel_size": (3, 1, 1)}, {"temporal_attention": False}, {"temporal_attention_heads": 2}],
    ids=["3x3x3+attention", "3x1x1+attention", "3x3x3-no-attention", "2-heads"],
)
@torch.no_grad()
def test_fresh_video_decoder_equals_image_decoder_per_frame(temporal_config):
    movq = tiny_movq()
    model = MoVQVideo.from_movq(movq, **temporal_config).eval()
    for key, value in movq.state_dict().items():  # image weights carried over bit for bit
        assert torch.equal(model.movq.state_dict()[key], value), key
    latents = seeded(2, 4, 3, 4, 4)  # (B, 4, T, h, w)

    expected = image_decode_per_frame(movq, latents)
    torch.testing.assert_close(model.decode(latents), expected, **SAME_MATH)

    # The test can fail: once the temporal layers are not the identity, frames mix.
    randomize_zero_parameters(model.temporal)
    assert all(layer.merge.item() != 0 for layer in model.modules() if hasattr(layer, "merge"))
    assert (model.decode(latents) - expected).abs().max() > 1e-2


def test_temporal_layout_follows_config():
    full = MoVQVideo.from_movq(tiny_movq())
    names = {name for name, _ in full.named_parameters() if name.startswith("temporal.")}
    # 2 resnets in the mid block, 2 per up block (layers_per_block + 1), each with 2 temporal convs.
    assert sum(name.endswith(".merge") for name in names) == (2 + 4 * 2) * 2
    assert "temporal.up_blocks.0.resnets.1.after_conv2.conv.weight" in names
    assert "temporal.mid_block.attentions.0.to_out.weight" in names
    assert "temporal.up_blocks.0.attentions.1.norm.conv_y.weight" in names
    assert not any(name.startswith("temporal.up_blocks.1.attentions") for name in names)  # no spatial attention there
    assert {id(p) for p in full.temporal_parameters()} == {id(p) for n, p in full.named_parameters() if n in names}

    thin = MoVQVideo.from_movq(tiny_movq(), temporal_kernel_size=(3, 1, 1), temporal_attention=False)
    assert thin.temporal.mid_block.resnets[0].after_conv1.conv.weight.shape == (32, 32, 3, 1, 1)
    assert not any(".attentions." in name for name, _ in thin.temporal.named_parameters())


@pytest.mark.parametrize(
    "temporal_config, paper_millions",
    [
        ({"temporal_kernel_size": (3, 1, 1), "temporal_attention": False}, 203),
        ({"temporal_kernel_size": (3, 3, 3), "temporal_attention": False}, 539),
        ({"temporal_kernel_size": (3, 1, 1)}, 220),
        ({"temporal_kernel_size": (3, 3, 3)}, 556),
    ],
)
def test_full_size_decoder_parameters_match_paper_table(temporal_config, paper_millions):
    """The paper's decoder table (161 M image decoder): where the temporal layers sit decides these counts."""
    with torch.device("meta"):
        model = MoVQVideo(**temporal_config)
    decoder = [*model.movq.decoder.parameters(), *model.movq.post_quant_conv.parameters()]
    assert int(sum(p.numel() for p in decoder) / 1e6) == 161
    total = sum(p.numel() for p in [*decoder, *model.temporal_parameters()])
    assert int(total / 1e6) == paper_millions


# (b) chunking ------------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_chunked_decode():
    latents = seeded(1, 4, 5, 4, 4)
    fresh = MoVQVideo.from_movq(tiny_movq()).eval()
    torch.testing.assert_close(fresh.decode(latents, chunk_size=2), fresh.decode(latents), **SAME_MATH)

    model = randomized_video_model()
    per_chunk = torch.cat([model.decode(latents[:, :, start : start + 2]) for start in (0, 2, 4)], dim=2)
    torch.testing.assert_close(model.decode(latents, chunk_size=2), per_chunk, **SAME_MATH)
    # Temporal layers see only their chunk: the frames next to a chunk border change.
    assert (model.decode(latents, chunk_size=2) - model.decode(latents)).abs().max() > 1e-3


# (c) encoding ------------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_encode_matches_image_encoder_per_frame():
    movq = tiny_movq()
    model = MoVQVideo.from_movq(movq).eval()
    video = seeded(2, 3, 2, 32, 32).clamp(-1, 1)  # (B, 3, T, H, W)
    expected = torch.stack([movq.encode(video[:, :, t]).latents for t in range(2)], dim=2)
    latents = model.encode(video)
    assert latents.shape == (2, 4, 2, 4, 4)
    torch.testing.assert_close(latents, expected, **SAME_MATH)
    torch.testing.assert_close(model.encode(video, chunk_size=1), expected, **SAME_MATH)


# (d) save / load ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_save_pretrained_round_trip(tmp_path):
    model = randomized_video_model(temporal_kernel_size=(3, 1, 1))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = MoVQVideo.from_pretrained(tmp_path).eval()

    def public(config) -> dict:
        return {key: value for key, value in dict(config).items() if not key.startswith("_")}

    assert public(loaded.config) == public(model.config)
    assert loaded.config.temporal_kernel_size == [3, 1, 1]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    latents = seeded(1, 4, 3, 4, 4)
    torch.testing.assert_close(loaded.decode(latents), model.decode(latents), atol=0, rtol=0)


@torch.no_grad()
def test_from_movq_reads_a_diffusers_folder(tmp_path):
    movq = tiny_movq()
    movq.save_pretrained(tmp_path / "movq")
    model = MoVQVideo.from_movq(tmp_path, subfolder="movq")
    for key, value in movq.state_dict().items():
        assert torch.equal(model.movq.state_dict()[key], value), key
    with pytest.raises(ValueError, match="subfolder"):
        MoVQVideo.from_movq(movq, subfolder="movq")


# (e) freezing and gradient checkpointing ---------------------------------------------------------------------------


@pytest.mark.parametrize("train_decoder", [False, True])
def test_freeze_image_layers(train_decoder):
    model = randomized_video_model()
    model.freeze_image_layers(train_decoder=train_decoder)
    video = seeded(1, 3, 2, 16, 16).clamp(-1, 1)
    model.decode(model.encode(video)).square().mean().backward()

    temporal = {id(p) for p in model.temporal_parameters()}
    decoder = {id(p) for p in [*model.movq.decoder.parameters(), *model.movq.post_quant_conv.parameters()]}
    for name, parameter in model.named_parameters():
        trainable = id(parameter) in temporal or (train_decoder and id(parameter) in decoder)
        assert parameter.requires_grad == trainable, name
        assert (parameter.grad is not None) == trainable, name
    assert all(p.grad is None for p in model.movq.encoder.parameters())  # the encoder never trains


def test_gradient_checkpointing_gives_the_same_gradients():
    latents = seeded(1, 4, 2, 4, 4)
    gradients = []
    for checkpointing in (False, True):
        model = randomized_video_model()
        model.freeze_image_layers()
        if checkpointing:
            model.enable_gradient_checkpointing()
        model.decode(latents).square().mean().backward()
        gradients.append([p.grad for p in model.temporal_parameters()])
    for plain, checkpointed in zip(*gradients):
        torch.testing.assert_close(checkpointed, plain, atol=1e-6, rtol=1e-5)


# (f) converter -----------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_converter_reproduces_released_movq(reference, original_state_dict, tmp_path):
    converted = convert_movq_state_dict(original_state_dict)
    assert len(converted) == len(original_state_dict)  # every published key used once
    movq = VQModel(**infer_movq_config(original_state_dict))
    codebook = {CODEBOOK_KEY: movq.state_dict()[CODEBOOK_KEY]}
    assert set(converted) == set(movq.state_dict()) - set(codebook)
    movq.load_state_dict({**converted, **codebook}, strict=True)

    frames, latents, decoded = reference["input"], reference["latents"], reference["decoded"]  # (T, C, H, W)
    torch.testing.assert_close(movq.encode(frames).latents, latents, **PORT_TOLERANCE)
    torch.testing.assert_close(movq.decode(latents, force_not_quantize=True).sample, decoded, **PORT_TOLERANCE)

    # The same through the file loader, and through MoVQ Video (a clip of T frames, identity temporal layers).
    torch.save(original_state_dict, tmp_path / "movq.pt")
    loaded = load_movq_from_original(tmp_path / "movq.pt")
    torch.testing.assert_close(loaded.decode(latents, force_not_quantize=True).sample, decoded, **PORT_TOLERANCE)
    video_model = MoVQVideo.from_movq(loaded).eval()
    video = unfold_frames(frames, num_frames=frames.shape[0])  # (1, 3, T, H, W)
    video_latents = video_model.encode(video)
    torch.testing.assert_close(fold_frames(video_latents), latents, **PORT_TOLERANCE)
    torch.testing.assert_close(fold_frames(video_model.decode(video_latents)), decoded, **PORT_TOLERANCE)


def test_converter_names_match_published_movq_at_full_size():
    """The real MoVQ (built on the meta device, no memory) maps onto the published key list of movq.pt."""
    with torch.device("meta"):
        movq = VQModel(**KANDINSKY3_MOVQ_CONFIG)
    diffusers_state = {key: value for key, value in movq.state_dict().items() if key != CODEBOOK_KEY}
    original = convert_movq_state_dict_to_original(diffusers_state)
    # Totals of kandinsky-video-1.0.md / original-keys/movq.tsv, and a few of its rows.
    assert len(original) == 430
    assert sum(value.numel() for value in original.values()) == 270_603_567
    published_rows = {
        "encoder.down.1.block.0.nin_shortcut.weight": (512, 256, 1, 1),
        "encoder.down.3.attn.1.proj_out.weight": (1024, 1024, 1, 1),
        "encoder.norm_out.norm_layer.weight": (1024,),
        "decoder.mid.attn_1.norm.conv_y.weight": (1024, 4, 1, 1),
        "decoder.up.3.attn.2.q.weight": (1024, 1024, 1, 1),
        "decoder.up.3.upsample.conv.weight": (1024, 1024, 3, 3),
        "decoder.up.0.block.0.nin_shortcut.weight": (256, 512, 1, 1),
        "decoder.norm_out.conv_b.weight": (256, 4, 1, 1),
        "decoder.conv_out.weight": (3, 256, 3, 3),
    }
    for key, shape in published_rows.items():
        assert tuple(original[key].shape) == shape, key
    assert infer_movq_config(original) == {**KANDINSKY3_MOVQ_CONFIG, "mid_block_add_attention": True}
    round_trip = convert_movq_state_dict(original)
    assert {key: tuple(value.shape) for key, value in round_trip.items()} == {
        key: tuple(value.shape) for key, value in diffusers_state.items()
    }


# (g) failures ------------------------------------------------------------------------------------------------------


def corrupt(state: dict, how: str) -> tuple[dict, list[str]]:
    """A broken copy of a published-layout state dict and the key names its error message must show."""
    state = dict(state)
    if how == "removed":
        del state["decoder.up.0.block.1.conv2.bias"]
        return state, ["decoder.up.0.block.1.conv2.bias"]
    if how == "renamed":
        state["decoder.up.3.attn.0.query.weight"] = state.pop("decoder.up.3.attn.0.q.weight")
        return state, ["decoder.up.3.attn.0.q.weight", "decoder.up.3.attn.0.query.weight"]
    if how == "reshaped":
        state["encoder.mid.attn_1.k.weight"] = torch.zeros(32, 32, 3, 3)
        return state, ["encoder.mid.attn_1.k.weight"]
    if how == "removed-config-key":  # a key the config is inferred from
        del state["encoder.conv_in.weight"]
        return state, ["encoder.conv_in.weight"]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["removed", "renamed", "reshaped", "removed-config-key"])
def test_corrupted_checkpoint_names_the_key(original_state_dict, tmp_path, how):
    state, named = corrupt(original_state_dict, how)
    torch.save(state, tmp_path / "movq.pt")
    with pytest.raises(CheckpointMismatchError) as error:
        load_movq_from_original(tmp_path / "movq.pt")
    for key in named:
        assert key in str(error.value)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_movq_from_original(tmp_path / "absent.pt")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.decode(torch.zeros(4, 4, 4, 4)), "latents must be"),  # a frame batch, not a video
        (lambda m: m.decode(torch.zeros(1, 3, 2, 4, 4)), "latents must be"),  # wrong channels
        (lambda m: m.decode(torch.zeros(1, 4, 2, 4, 4), chunk_size=0), "chunk_size"),
        (lambda m: m.encode(torch.zeros(1, 4, 2, 32, 32)), "video must be"),
        (lambda m: m.encode(torch.zeros(1, 3, 2, 30, 32)), "multiples of 8"),
        (lambda m: MoVQVideo(movq_config=dict(tiny_movq().config), temporal_kernel_size=(2, 3, 3)), "odd"),
        (lambda m: MoVQVideo(movq_config=dict(tiny_movq().config), temporal_kernel_size=3), "odd"),
        (lambda m: MoVQVideo(movq_config={**tiny_movq().config, "norm_type": "group"}), "norm_type"),
        (lambda m: MoVQVideo.from_movq(tiny_movq(), temporal_attention_heads=3), "divide"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    model = MoVQVideo.from_movq(tiny_movq())
    with pytest.raises(ValueError, match=message):
        call(model)
