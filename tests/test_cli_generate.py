"""`kandinsky-video generate` end to end, and a published-weights -> pipeline folder -> video run."""

import logging
import shutil
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch
from safetensors.torch import load_file

from kandinsky_video.cli import main
from kandinsky_video.testing import tiny_kandinsky3_unet, tiny_movq, tiny_t5_encoder, tiny_tokenizer

SMALL = ["--height", "64", "--width", "64", "--keyframes", "4", "--steps", "2"]
DATA = Path(__file__).parent / "data"


@pytest.fixture
def model_dir(tiny_model_dir):
    return tiny_model_dir


def test_generate_writes_a_video(model_dir, tmp_path, capsys, caplog):
    out = tmp_path / "video.mp4"
    with caplog.at_level(logging.WARNING):
        assert main(["generate", "a red circle", "-o", str(out), "--model", str(model_dir), "--preset", "medium",
                     "--device", "cpu", *SMALL]) == 0
    frames = iio.imread(out, index=None)
    assert frames.shape == (13, 64, 64, 3)
    assert iio.immeta(out)["fps"] == 8
    assert "wrote" in capsys.readouterr().out
    assert "running on the CPU" in caplog.text


def test_generate_many_prompts(model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\na blue square\n")
    assert main(["generate", "--prompts", str(prompts), "--out-dir", str(tmp_path / "videos"), "--model",
                 str(model_dir), "--device", "cpu", *SMALL]) == 0
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["0000.mp4", "0001.mp4"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["", "-o", "x.mp4"], "prompt is empty"),
        (["a", "-o", "x.mp4", "--height", "100"], "multiples of 64"),
        (["a"], "-o out.mp4"),
        (["--prompts", "missing.txt", "--out-dir", "d"], "does not exist"),
    ],
)
def test_generate_bad_input(model_dir, tmp_path, capsys, args, message):
    assert main(["generate", *args, "--model", str(model_dir), "--device", "cpu", "--steps", "1"]) == 2
    assert message in capsys.readouterr().err


def test_generate_unknown_preset(model_dir, capsys):
    with pytest.raises(SystemExit):
        main(["generate", "a", "-o", "x.mp4", "--model", str(model_dir), "--preset", "ultra"])
    assert "invalid choice: 'ultra'" in capsys.readouterr().err


def test_generate_missing_or_incomplete_model(model_dir, tmp_path, capsys):
    assert main(["generate", "a", "-o", str(tmp_path / "x.mp4"), "--model", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert "does not exist" in error and "kandinsky-video convert" in error
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    shutil.rmtree(broken / "movq")
    assert main(["generate", "a", "-o", str(tmp_path / "x.mp4"), "--model", str(broken)]) == 2
    assert "['movq']" in capsys.readouterr().err
    converted_only = tmp_path / "converted"
    (converted_only / "unet").mkdir(parents=True)
    assert main(["generate", "a", "-o", str(tmp_path / "x.mp4"), "--model", str(converted_only)]) == 2
    assert "--kandinsky3" in capsys.readouterr().err


def test_published_checkpoints_to_video(tmp_path):
    """convert --kandinsky3 assembles a pipeline folder from published-layout files and a Kandinsky 3.0 folder."""
    kandinsky3 = tmp_path / "kandinsky-3"
    unet = tiny_kandinsky3_unet()
    unet.save_pretrained(kandinsky3 / "unet")
    tiny_tokenizer().save_pretrained(kandinsky3 / "tokenizer")
    tiny_t5_encoder().save_pretrained(kandinsky3 / "text_encoder")
    tiny_movq().save_pretrained(kandinsky3 / "movq")

    unets = load_file(DATA / "unet_reference.safetensors")
    keyframe = {k.removeprefix("keyframe.state_dict."): v for k, v in unets.items() if k.startswith("keyframe.state_dict.")}
    # The tiny released-layout U-Net has 8-wide context; the tiny T5 is 16 wide.
    projections = {"t5.0.weight": torch.randn(8, 16), "t5.1.weight": torch.ones(8), "t5.1.bias": torch.zeros(8)}
    torch.save({"unet": keyframe, "projections": projections, "null_embedding": torch.randn(8)}, tmp_path / "kv.pt")
    interpolation = {k.removeprefix("interpolation.state_dict."): v for k, v in unets.items()
                     if k.startswith("interpolation.state_dict.")}
    torch.save({"unet": interpolation, "null_embedding": torch.randn(8)}, tmp_path / "kvi.pt")

    assert main(["convert", "--keyframe-ckpt", str(tmp_path / "kv.pt"), "--interpolation-ckpt", str(tmp_path / "kvi.pt"),
                 "--kandinsky3", str(kandinsky3), "--output", str(tmp_path / "pipeline"), "--groups", "2",
                 "--attention-head-dim", "4"]) == 0
    assert (tmp_path / "pipeline" / "model_index.json").is_file()
    out = tmp_path / "video.gif"
    assert main(["generate", "a red circle", "-o", str(out), "--model", str(tmp_path / "pipeline"), "--preset", "high",
                 "--device", "cpu", *SMALL]) == 0
    assert iio.imread(out, index=None).shape == (49, 64, 64, 3)
