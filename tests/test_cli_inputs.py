"""Bad input to the commands: every numeric flag's range, outputs that would be replaced or cannot be written,
unreadable prompt files, and no partial file left behind by a failed write."""

import re

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from kandinsky_video.animation.writer import Mp4Writer
from kandinsky_video.cli import main
from kandinsky_video.evaluation import videos as eval_videos
from kandinsky_video.pipelines import export
from kandinsky_video.pipelines.pipeline_kandinsky3_image import Kandinsky3ImagePipeline

SMALL = ["--height", "64", "--width", "64", "--keyframes", "2", "--steps", "1", "--device", "cpu"]
SEEDS = "must be a whole number from 0 to 18446744073709551615"
GUIDANCE = "must be a finite number from 0 to 100"
FPS = "must be a finite number above 0 and at most 1000"


@pytest.mark.parametrize("command, flag, value, message", [
    ("generate", "--guidance-scale", "nan", f"{GUIDANCE}, got 'nan'"),
    ("generate", "--guidance-scale", "-1", f"{GUIDANCE}, got '-1'"),
    ("generate", "--interpolation-guidance-scale", "inf", f"{GUIDANCE}, got 'inf'"),
    ("generate", "--fps", "inf", f"{FPS}, got 'inf'"),
    ("generate", "--fps", "0", f"{FPS}, got '0'"),
    ("generate", "--seed", "-1", f"{SEEDS}, got '-1'"),
    ("generate", "--seed", str(2**64), f"{SEEDS}, got '18446744073709551616'"),
    ("generate", "--steps", "0", "must be a whole number from 1 to 1000"),
    ("generate", "--steps", "2.5", "must be a whole number from 1 to 1000, got '2.5'"),
    ("generate", "--interpolation-steps", "1001", "must be a whole number from 1 to 1000"),
    ("generate", "--keyframes", "0", "must be a whole number from 1 to 256"),
    ("generate", "--height", "8192", "must be a whole number from 64 to 4096"),
    ("generate", "--decode-chunk-size", "0", "must be a whole number from 1 to 4096"),
    ("image", "--strength", "0", "must be a finite number above 0 and at most 1, got '0'"),
    ("image", "--strength", "1.5", "must be a finite number above 0 and at most 1, got '1.5'"),
    ("image", "--guidance-scale", "nan", f"{GUIDANCE}, got 'nan'"),
    ("image", "--seed", "-1", f"{SEEDS}, got '-1'"),
    ("animate", "--duration", "inf", "must be a finite number above 0 and at most 3600, got 'inf'"),
    ("animate", "--duration", "1e12", "must be a finite number above 0 and at most 3600, got '1e12'"),
    ("animate", "--fps", "inf", f"{FPS}, got 'inf'"),
    ("animate", "--cadence", "0", "must be a whole number from 1 to 1000"),
    ("animate", "--size", "32", "must be a whole number from 64 to 4096"),
    ("animate", "--seed", "-1", f"{SEEDS}, got '-1'"),
    ("app", "--port", "0", "must be a whole number from 1 to 65535"),
    ("eval", "--num-frames", "8", "must be a whole number from 9 to 1024"),
    ("eval", "--batch-size", "0", "must be a whole number from 1 to 4096"),
    ("eval", "--max-real", "1", "must be a whole number from 2 to 10000000"),
    ("eval", "--real-frame-stride", "nan", "must be a whole number from 1 to 1000, got 'nan'"),
    ("eval", "--seed", "-1", f"{SEEDS}, got '-1'"),
    ("eval-ucf101", "--fps", "inf", f"{FPS}, got 'inf'"),
    ("eval-ucf101", "--guidance-scale", "nan", f"{GUIDANCE}, got 'nan'"),
    ("eval-ucf101", "--steps", "0", "must be a whole number from 1 to 1000"),
    ("convert", "--groups", "0", "must be a whole number from 1 to 4096"),
])
def test_numeric_flags_name_their_range(command, flag, value, message, capsys):
    base = {"generate": ["generate", "a", "-o", "x.mp4", "--model", "demo"],
            "image": ["image", "a", "-o", "x.png", "--model", "demo"],
            "animate": ["animate", "--prompt", "a", "-o", "x.mp4", "--model", "demo"],
            "app": ["app", "--model", "demo"], "convert": ["convert", "-o", "out"],
            "eval": ["eval", "folders", "--real", "r", "--fake", "f"],
            "eval-ucf101": ["eval", "ucf101", "--samples-dir", "s"]}[command]
    with pytest.raises(SystemExit) as exit_:
        main([*base, flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}: {message}" in capsys.readouterr().err


def test_existing_outputs_are_kept_unless_overwrite_is_given(tiny_model_dir, tmp_path, capsys):
    video = tmp_path / "video.mp4"
    video.write_bytes(b"an earlier result")
    args = ["generate", "a red circle", "-o", str(video), "--model", str(tiny_model_dir), *SMALL]
    assert main(args) == 2
    assert f"{video} exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert video.read_bytes() == b"an earlier result"
    assert main([*args, "--overwrite"]) == 0
    assert iio.imread(video, index=None).shape == (2, 64, 64, 3)

    picture = tmp_path / "picture.png"
    picture.write_bytes(b"an earlier image")
    assert main(["image", "a", "-o", str(picture), "--model", str(tiny_model_dir), "--steps", "1"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and picture.read_bytes() == b"an earlier image"
    flight = tmp_path / "flight.mp4"
    flight.write_bytes(b"an earlier animation")
    assert main(["animate", "--prompt", "a", "-o", str(flight), "--model", str(tiny_model_dir), "--size", "64"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and flight.read_bytes() == b"an earlier animation"


def test_out_dir_reruns_do_not_replace_earlier_videos(tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\na green triangle\n")
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "0001.mp4").write_bytes(b"earlier")
    (videos / "0002.mp4").write_bytes(b"earlier")
    args = ["generate", "--prompts", str(prompts), "--out-dir", str(videos), "--model", str(tiny_model_dir), *SMALL]
    assert main(args) == 2
    assert f"{videos / '0001.mp4'} and 1 more exist; pass --overwrite" in capsys.readouterr().err
    assert not (videos / "0000.mp4").exists()  # refused before anything was generated
    with pytest.raises(SystemExit):
        main([*args, "--seed", str(2**64)])
    assert main([*args, "--seed", str(2**64 - 2)]) == 2  # seeds 2**64 - 2, 2**64 - 1, then one too many
    assert "passes the largest seed" in capsys.readouterr().err


@pytest.mark.parametrize("output, message", [
    ("folder", "is a folder; give a file name"),
    ("video.avi", "must end in .mp4 or .gif"),
])
def test_unwritable_outputs_are_refused_before_the_model_loads(tmp_path, capsys, output, message):
    (tmp_path / "folder").mkdir()
    # --model points nowhere: the output is checked first, so the model's error never comes.
    assert main(["generate", "a", "-o", str(tmp_path / output), "--model", str(tmp_path / "no-model")]) == 2
    assert message in capsys.readouterr().err


def test_a_prompt_file_that_is_not_utf8_is_named(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("un caf\xe9 rouge\n".encode("latin-1"))
    assert main(["generate", "--prompts", str(prompts), "--out-dir", str(tmp_path), "--model", "demo"]) == 2
    assert f"prompt file {prompts} is not UTF-8 text (byte 6 cannot be decoded)" in capsys.readouterr().err


class FailingWriter:
    """An imageio writer that fails (as Ctrl-C would) after its first frame."""

    def __init__(self, path, *args, **kwargs):
        self.path = path
        open(path, "wb").write(b"half a video")

    def append_data(self, frame):
        if getattr(self, "written", False):
            raise KeyboardInterrupt
        self.written = True

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.mark.parametrize("write", [
    lambda path, frames: export.write_video(frames, path, fps=8),
    lambda path, frames: eval_videos.write_video(path, frames, fps=8),
], ids=["pipelines.write_video", "evaluation.write_video"])
def test_a_failed_video_write_leaves_no_file(tmp_path, monkeypatch, write):
    monkeypatch.setattr(imageio, "get_writer", FailingWriter)
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "video.mp4", frames)
    assert list(tmp_path.iterdir()) == []  # neither the video nor its hidden partial file


def test_a_failed_animation_or_image_write_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "get_writer", FailingWriter)
    with pytest.raises(KeyboardInterrupt), Mp4Writer(tmp_path / "flight.mp4", fps=8) as writer:
        for _ in range(3):
            writer.write(np.zeros((16, 16, 3), np.uint8))
    monkeypatch.setattr(Image.Image, "save", lambda self, path, **kwargs: (open(path, "wb").write(b"x"), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        export.write_image(Image.new("RGB", (16, 16)), tmp_path / "picture.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("setting, value, message", [
    ("guidance_scale", float("nan"), "guidance_scale must be a finite number from 0 to 100, got nan"),
    ("interpolation_guidance_scale", float("inf"), "interpolation_guidance_scale must be a finite number"),
    ("num_inference_steps", 0, "num_inference_steps must be a whole number from 1 to 1000, got 0"),
    ("interpolation_steps", 2.5, "interpolation_steps must be a whole number from 1 to 1000, got 2.5"),
    ("num_keyframes", 10**6, "num_keyframes must be a whole number from 1 to 256"),
    ("decode_chunk_size", 0, "decode_chunk_size must be a whole number from 1 to 4096"),
    ("num_videos_per_prompt", 0, "num_videos_per_prompt must be a whole number from 1 to 64"),
])
def test_the_pipelines_check_every_number_before_any_work(setting, value, message):
    from kandinsky_video.testing import tiny_pipeline

    pipeline = tiny_pipeline()
    with pytest.raises(ValueError, match=re.escape(message)):
        pipeline("a red circle", **{"height": 64, "width": 64, "num_keyframes": 2, "num_inference_steps": 1,
                                    setting: value})
    image = Kandinsky3ImagePipeline.from_video_pipeline(pipeline)
    with pytest.raises(ValueError, match=re.escape("guidance_scale must be a finite number from 0 to 100, got nan")):
        image("a red circle", height=64, width=64, num_inference_steps=1, guidance_scale=float("nan"))
