"""`kandinsky-video animate` end to end on a tiny model folder: files read back with the right size and count."""

import imageio.v3 as iio
import pytest

from kandinsky_video.cli import main

FAST = ["--size", "64", "--steps", "2", "--device", "cpu", "--fps", "8"]


@pytest.fixture
def model_dir(tiny_model_dir):
    return tiny_model_dir


def test_animate_with_presets_and_prompt_sequence(model_dir, tmp_path, capsys):
    out = tmp_path / "flight.mp4"
    assert main(["animate", "--prompt", "a red circle", "--duration", "0.5", "--prompt", "a blue square",
                 "--duration", "0.25", "--motion", "zoomin", "--motion", "spin_clockwise", "-o", str(out),
                 "--model", str(model_dir), *FAST]) == 0
    assert iio.imread(out, index=None).shape == (int(0.75 * 8) + 1, 64, 64, 3)
    assert "7 frames" in capsys.readouterr().out


def test_animate_from_a_spec_with_schedules(model_dir, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("prompts: [a green triangle]\ndurations: [0.5]\nanimation_mode: 2D\ncadence: 1\n")
    out = tmp_path / "spin.mp4"
    assert main(["animate", "--spec", str(spec), "--schedule", "angle=0:(2*sin(t))", "--schedule", "zoom=0:(1.05)",
                 "--denoise-strength", "0.3", "-o", str(out), "--model", str(model_dir), *FAST]) == 0
    assert iio.imread(out, index=None).shape == (5, 64, 64, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "a", "--schedule", "zoom=0:(1.0"], "zoom"),
        (["--prompt", "a", "--motion", "sideways"], "zoomin"),
        (["--prompt", "a", "--schedule", "angle=0:(t.__class__)"], "attribute"),
        (["--prompt", "a", "--depth", "/nowhere/depth-model"], "does not exist"),
        (["--spec", "missing.yaml"], "does not exist"),
        ([], "at least one --prompt"),
    ],
)
def test_animate_bad_input(model_dir, tmp_path, capsys, args, message):
    assert main(["animate", *args, "-o", str(tmp_path / "x.mp4"), "--model", str(model_dir), *FAST]) == 2
    assert message in capsys.readouterr().err
