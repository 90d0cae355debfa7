import pytest
import torch

from conftest import per_frame, plain_config
from kandinsky_video.models.unet_keyframe import TEMPORAL_WEIGHTS_NAME, KandinskyVideoUNet
from kandinsky_video.testing import randomize_zero_parameters

VARIANTS = [
    {},  # released Conv1dAttn1dBlocks
    {"temporal_placement": "layers"},
    {"temporal_conv": "3d"},
    {"temporal_attention": "3d"},
]


def video(batch=2, frames=5, size=16, seed=0):
    return torch.randn(batch, 4, frames, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v.values()) or "blocks")
def test_fresh_model_equals_image_unet_frame_by_frame(t2i_unet, text, variant):
    model = KandinskyVideoUNet.from_kandinsky3(t2i_unet, **variant).eval()
    sample = video()
    with torch.no_grad():
        out = model(sample, 321, *text).sample
        reference = per_frame(t2i_unet, sample, 321, *text)
        assert out.shape == sample.shape
        torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
        # The identity holds because of the zero-init, not by accident: trained temporal weights change the output.
        randomize_zero_parameters(model)
        assert (model(sample, 321, *text).sample - reference).abs().max() > 1e-3


def test_temporal_layers_mix_frames_and_use_positions(t2i_unet, text):
    model = KandinskyVideoUNet.from_kandinsky3(t2i_unet).eval()
    randomize_zero_parameters(model)
    sample = video(batch=1)
    context, mask = text[0][:1], text[1][:1]
    with torch.no_grad():
        out = model(sample, 10, context, mask).sample
        changed = sample.clone()
        changed[:, :, 0] += 1.0
        # A change in frame 0 reaches frame 4 only through the temporal layers.
        assert (model(changed, 10, context, mask).sample[:, :, 4] - out[:, :, 4]).abs().max() > 1e-4
        # Default positions are the released 2-fps grid; other positions give another output.
        explicit = model(sample, 10, context, mask, frame_positions=torch.arange(5) * 12).sample
        torch.testing.assert_close(explicit, out)
        shifted = model(sample, 10, context, mask, frame_positions=torch.arange(5) * 3).sample
        assert (shifted - out).abs().max() > 1e-4


@pytest.mark.parametrize("frames", [1, 3, 16])
def test_any_number_of_frames(t2i_unet, text, frames):
    model = KandinskyVideoUNet.from_kandinsky3(t2i_unet).eval()
    with torch.no_grad():
        assert model(video(frames=frames, size=8), 5, *text).sample.shape == (2, 4, frames, 8, 8)


def test_only_temporal_parameters_get_gradients(t2i_unet, text):
    model = KandinskyVideoUNet.from_kandinsky3(t2i_unet).freeze_spatial()
    randomize_zero_parameters(model)
    model(video(size=8), 500, *text).sample.square().mean().backward()
    spatial = [name for name, p in model.named_parameters() if name.startswith("spatial.") and p.grad is not None]
    assert spatial == []
    temporal = dict(model.named_parameters())
    assert all(p.grad is not None for p in model.temporal_parameters())
    assert {id(p) for p in model.temporal_parameters()} == {
        id(p) for name, p in temporal.items() if not name.startswith("spatial.")
    }
    assert sum(p.numel() for p in model.temporal_parameters()) < sum(p.numel() for p in model.parameters())


def test_gradient_checkpointing_gives_the_same_gradients(t2i_unet, text):
    model = KandinskyVideoUNet.from_kandinsky3(t2i_unet).freeze_spatial()
    randomize_zero_parameters(model)
    sample = video(size=8)

    def gradients():
        model.zero_grad()
        model(sample, 500, *text).sample.square().mean().backward()
        return [p.grad.clone() for p in model.temporal_parameters()]

    plain = gradients()
    model.enable_gradient_checkpointing()
    checkpointed = gradients()
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b)


def test_save_and_load_round_trip(t2i_unet, text, tmp_path):
    model = KandinskyVideoUNet.from_kandinsky3(t2i_unet, temporal_conv="3d").eval()
    randomize_zero_parameters(model)
    sample = video(size=8)
    with torch.no_grad():
        expected = model(sample, 7, *text).sample

    model.save_pretrained(tmp_path / "full")
    loaded = KandinskyVideoUNet.from_pretrained(tmp_path / "full").eval()
    assert plain_config(loaded.config) == plain_config(model.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(sample, 7, *text).sample, expected, rtol=0, atol=0)

    model.save_temporal(tmp_path / "temporal")
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "temporal" / TEMPORAL_WEIGHTS_NAME)
    assert saved and not any(key.startswith("spatial.") for key in saved)
    fresh = KandinskyVideoUNet.from_kandinsky3(t2i_unet, temporal_conv="3d").eval()
    fresh.load_temporal(tmp_path / "temporal")
    with torch.no_grad():
        torch.testing.assert_close(fresh(sample, 7, *text).sample, expected, rtol=0, atol=0)


def test_load_temporal_ignores_private_config_entries(t2i_unet, tmp_path):
    import json

    KandinskyVideoUNet.from_kandinsky3(t2i_unet).save_temporal(tmp_path)
    path = tmp_path / "temporal_config.json"
    saved = json.loads(path.read_text())
    saved["_use_default_values"] = ["b", "a"]  # diffusers' bookkeeping, in whatever order a process produced
    path.write_text(json.dumps(saved))
    KandinskyVideoUNet.from_kandinsky3(t2i_unet).load_temporal(tmp_path)


def test_load_temporal_rejects_another_layout(t2i_unet, tmp_path):
    KandinskyVideoUNet.from_kandinsky3(t2i_unet, temporal_conv="3d").save_temporal(tmp_path)
    with pytest.raises(ValueError, match="temporal_conv"):
        KandinskyVideoUNet.from_kandinsky3(t2i_unet).load_temporal(tmp_path)
    with pytest.raises(FileNotFoundError, match="save_temporal"):
        KandinskyVideoUNet.from_kandinsky3(t2i_unet).load_temporal(tmp_path / "nowhere")


def test_from_kandinsky3_folder_on_disk(t2i_unet, tmp_path, text):
    from kandinsky_video.testing import tiny_kandinsky3_unet

    tiny_kandinsky3_unet().save_pretrained(tmp_path / "kandinsky-3" / "unet")
    model = KandinskyVideoUNet.from_kandinsky3(tmp_path / "kandinsky-3").eval()
    with torch.no_grad():
        out = model(video(size=8), 3, *text).sample
        # The folder gives the very model the in-memory conversion gives: same shapes, so the same bits.
        in_memory = KandinskyVideoUNet.from_kandinsky3(t2i_unet).eval()
        torch.testing.assert_close(out, in_memory(video(size=8), 3, *text).sample, rtol=0, atol=0)
        # Frame by frame only to fp32 rounding: one batch of B*T frames and T batches of B sum in different orders
        # on a multi-threaded CPU (2.5e-5 seen on outputs up to 1.6).
        torch.testing.assert_close(out, per_frame(t2i_unet, video(size=8), 3, *text), atol=1e-4, rtol=1e-4)


def test_compiles_without_graph_breaks(t2i_unet, text):
    model = KandinskyVideoUNet.from_kandinsky3(t2i_unet).eval()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(video(size=8), 3, *text).sample, model(video(size=8), 3, *text).sample)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"temporal_placement": "inside"}, "temporal_placement"), ({"temporal_conv": "2d"}, "temporal_conv")],
)
def test_bad_config_values(t2i_unet, kwargs, message):
    with pytest.raises(ValueError, match=message):
        KandinskyVideoUNet.from_kandinsky3(t2i_unet, **kwargs)


def test_bad_input_shapes(t2i_unet, text):
    model = KandinskyVideoUNet.from_kandinsky3(t2i_unet)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        model(torch.randn(2, 4, 8, 8), 1, *text)
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.randn(2, 4, 3, 12, 12), 1, *text)
