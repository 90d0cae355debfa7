"""LPIPS from user-supplied weights (lpips v0.1 layout, no torchvision) and its use in the decoder trainer."""

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from kandinsky_video.convert.common import CheckpointMismatchError
from kandinsky_video.data.synthetic import write_square_videos
from kandinsky_video.training import load_config, train
from kandinsky_video.training.lpips import load_lpips

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_decoder.yaml"
# The layout of lpips.LPIPS(net=...).state_dict(), written out here independently of the module under test:
# (torchvision features index, in, out, kernel) per conv and slice, and the lin layers' widths.
CONVS = {
    "vgg": [[(0, 3, 64, 3), (2, 64, 64, 3)], [(5, 64, 128, 3), (7, 128, 128, 3)],
            [(10, 128, 256, 3), (12, 256, 256, 3), (14, 256, 256, 3)],
            [(17, 256, 512, 3), (19, 512, 512, 3), (21, 512, 512, 3)],
            [(24, 512, 512, 3), (26, 512, 512, 3), (28, 512, 512, 3)]],
    "alex": [[(0, 3, 64, 11)], [(3, 64, 192, 5)], [(6, 192, 384, 3)], [(8, 384, 256, 3)], [(10, 256, 256, 3)]],
}


def random_lpips_file(folder: Path, net: str, suffix: str = ".pth", drop: str | None = None) -> Path:
    torch.manual_seed(0)
    state = {"scaling_layer.shift": torch.zeros(1, 3, 1, 1), "scaling_layer.scale": torch.ones(1, 3, 1, 1)}
    for number, convs in enumerate(CONVS[net], start=1):
        for index, c_in, c_out, kernel in convs:
            scale = (c_in * kernel**2) ** -0.5  # unit-variance activations through the random backbone
            state[f"net.slice{number}.{index}.weight"] = torch.randn(c_out, c_in, kernel, kernel) * scale
            state[f"net.slice{number}.{index}.bias"] = torch.randn(c_out) * 0.01
        width = convs[-1][2]
        state[f"lin{number - 1}.model.1.weight"] = torch.rand(1, width, 1, 1)  # lpips' lin weights are >= 0
        state[f"lins.{number - 1}.model.1.weight"] = state[f"lin{number - 1}.model.1.weight"].clone()
    state.pop(drop, None)
    path = folder / f"lpips_{net}{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    return path


@pytest.mark.parametrize("net, suffix", [("vgg", ".pth"), ("alex", ".safetensors")])
def test_distance_is_zero_for_equal_images_positive_otherwise_and_differentiable(tmp_path, net, suffix):
    lpips = load_lpips(random_lpips_file(tmp_path, net, suffix))
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(lpips(images, images), torch.zeros(2))
    noisy = (images + 0.3 * torch.randn_like(images)).requires_grad_(True)
    distance = lpips(noisy, images)
    assert distance.shape == (2,) and (distance > 0).all()
    distance.sum().backward()
    assert noisy.grad is not None and noisy.grad.abs().sum() > 0
    assert not any(parameter.requires_grad for parameter in lpips.parameters())


def test_missing_keys_are_named_and_a_missing_file_says_so(tmp_path):
    with pytest.raises(CheckpointMismatchError, match=r"missing \(1\):\s+lin3.model.1.weight"):
        load_lpips(random_lpips_file(tmp_path, "vgg", drop="lin3.model.1.weight"))
    with pytest.raises(FileNotFoundError, match="decoder.lpips_weights"):
        load_lpips(tmp_path / "nowhere.pth")


class TouchesAFile:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_bad_file(folder: Path, name: str) -> Path:
    path = folder / name
    if name == "truncated.pth":
        data = random_lpips_file(folder, "alex").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif name == "list.pth":
        torch.save([torch.zeros(1)], path)
    elif name == "unsafe.pth":
        path.write_bytes(pickle.dumps({"net.slice1.0.weight": TouchesAFile(folder / "marker")}, protocol=2))
    else:
        path.write_bytes(b"\x80\x04 not a pickle, not safetensors")
    return path


BAD_FILES = {  # file -> what the message says about it
    "junk.pth": "weights_only=True) refuses it",
    "truncated.pth": "(RuntimeError: PytorchStreamReader",
    "unsafe.pth": "weights_only=True) refuses it",
    "list.pth": "holds a list, not a {name: tensor} state dict",
    "junk.safetensors": "(SafetensorError",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_unreadable_or_unsafe_weights_get_a_message_naming_the_file(tmp_path, name):
    path = write_bad_file(tmp_path, name)
    with pytest.raises(CheckpointMismatchError) as error:
        load_lpips(path)
    message = str(error.value)
    assert str(path) in message and BAD_FILES[name] in message and "lpips.LPIPS(net=" in message
    assert not (tmp_path / "marker").exists()


def test_decoder_trains_with_lpips(tmp_path):
    videos = write_square_videos(tmp_path / "videos", count=1, num_frames=12, height=32, width=32)
    weights = random_lpips_file(tmp_path, "alex")

    def first_loss(folder: str, *overrides: str) -> float:
        train(load_config("decoder", CONFIG, [f"data.source={videos}", f"run.output_dir={tmp_path / folder}",
                                              "data.resolution=32", "run.report_to=[]", "optim.steps=1", *overrides]))
        return json.loads((tmp_path / folder / "metrics.jsonl").read_text().splitlines()[0])["loss"]

    plain = first_loss("plain")
    with_lpips = first_loss("lpips", f"decoder.lpips_weights={weights}", "decoder.lpips_weight=2.0")
    assert with_lpips > plain  # same seed and clip: the reconstruction term plus a positive perceptual term
    with pytest.raises(FileNotFoundError, match="decoder.lpips_weights"):
        first_loss("missing", f"decoder.lpips_weights={tmp_path / 'nowhere.pth'}")
