"""`kandinsky-video image`: text-to-image, image-to-image and inpainting from a model folder, files read back."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from kandinsky_video.cli import main

DATA = Path(__file__).parent / "data"
SMALL = ["--height", "64", "--width", "64", "--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    """A copy: the inpainting test converts weights into it."""
    folder = tmp_path_factory.mktemp("model") / "tiny"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_text_to_image_then_image_to_image(model_dir, tmp_path):
    assert main(["image", "a red circle", "-o", str(tmp_path / "a.png"), "--model", str(model_dir), *SMALL]) == 0
    assert Image.open(tmp_path / "a.png").size == (64, 64)
    assert main(["image", "a red circle", "-o", str(tmp_path / "b.png"), "--model", str(model_dir), "--init",
                 str(tmp_path / "a.png"), "--strength", "0.5", *SMALL]) == 0
    assert Image.open(tmp_path / "b.png").size == (64, 64)


def test_inpainting_with_converted_weights(model_dir, tmp_path, capsys):
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "init.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    args = ["image", "a red circle", "-o", str(tmp_path / "c.png"), "--model", str(model_dir), "--init",
            str(tmp_path / "init.png"), "--mask", str(tmp_path / "mask.png"), *SMALL]
    assert main(args) == 2
    assert "--inpainting-ckpt" in capsys.readouterr().err

    reference = load_file(DATA / "kandinsky3_reference.safetensors")
    unet = {k.removeprefix("inpaint.state_dict."): v for k, v in reference.items() if k.startswith("inpaint.state_dict.")}
    torch.save({"unet": unet, "null_embedding": torch.randn(8)}, tmp_path / "inpainting.pt")
    torch.save({"0.weight": torch.randn(8, 16), "1.weight": torch.ones(8), "1.bias": torch.zeros(8)}, tmp_path / "projection.pt")
    assert main(["convert", "--inpainting-ckpt", str(tmp_path / "inpainting.pt"), "--inpainting-projection-ckpt",
                 str(tmp_path / "projection.pt"), "--output", str(model_dir), "--groups", "2", "--attention-head-dim", "4"]) == 0
    assert main(args + ["--dilate-mask"]) == 0
    assert Image.open(tmp_path / "c.png").size == (64, 64)


@pytest.mark.parametrize("extra, message", [(["--mask", "m.png"], "--mask needs --init"),
                                             (["--init", "missing.png"], "does not exist")])
def test_image_bad_input(model_dir, tmp_path, capsys, extra, message):
    assert main(["image", "a", "-o", str(tmp_path / "x.png"), "--model", str(model_dir), *extra, *SMALL]) == 2
    assert message in capsys.readouterr().err
