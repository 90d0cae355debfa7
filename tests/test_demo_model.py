"""The shipped demo model (kandinsky_video/demo/weights) through every command, and its quality report's parts."""

import json
from dataclasses import replace

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import kandinsky_video.demo as demo
from kandinsky_video.cli import main
from kandinsky_video.demo.quality import (FVD_FRAMES, autoencoded_videos, fvd, fvd_clips, prompt_scenes,
                                          rendered_videos, score)
from kandinsky_video.demo.world import SHAPES, all_scenes
from kandinsky_video.pipelines.loading import check_model_folder, generation_defaults, load_pipeline

FAST = ["--steps", "6", "--interpolation-steps", "3"]  # the shipped defaults are 50 / 50; CI only checks shapes


def test_shipped_weights_are_a_complete_fp16_pipeline():
    folder = demo.demo_weights()
    check_model_folder(folder)
    files = sorted(folder.glob("*/*.safetensors"))
    assert {f.parent.name for f in files} >= {"unet", "interpolation_unet", "movq", "text_encoder", "text_projection"}
    for path in files:
        with safe_open(path, "pt") as weights:
            dtypes = {weights.get_slice(name).get_dtype() for name in weights.keys()}
        assert dtypes <= {"F16", "F32"}, (path, dtypes)
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 22e6
    defaults = generation_defaults("demo")
    assert defaults["height"] == defaults["width"] == 64 and defaults["preset"] == "medium"


def test_generate_with_the_demo_model(tmp_path, capsys):
    """The README's first command, with fewer steps: 5 keyframes + one k=10 pass = 45 frames of 64x64 at 22 fps."""
    out = tmp_path / "demo.mp4"
    assert main(["generate", "a red circle moving right", "--model", "demo", "-o", str(out), *FAST]) == 0
    frames = iio.imread(out, index=None)
    assert frames.shape == (45, 64, 64, 3)
    assert iio.immeta(out)["fps"] == 22
    assert "45 frames" in capsys.readouterr().out


def test_flags_override_the_demo_defaults(tmp_path):
    out = tmp_path / "keyframes.gif"
    assert main(["generate", "a blue square growing on a white background", "--model", "demo", "-o", str(out),
                 "--preset", "low", "--keyframes", "3", "--steps", "4"]) == 0
    assert iio.imread(out, index=None).shape[:3] == (3, 64, 64)


def test_image_and_animate_with_the_demo_model(tmp_path):
    picture = tmp_path / "image.png"
    assert main(["image", "a green square on a black background", "--model", "demo", "-o", str(picture),
                 "--steps", "6"]) == 0
    assert Image.open(picture).size == (64, 64)
    edited = tmp_path / "edited.png"
    assert main(["image", "a green square on a white background", "--model", "demo", "-o", str(edited),
                 "--init", str(picture), "--strength", "0.5", "--steps", "6"]) == 0
    assert Image.open(edited).size == (64, 64)

    animation = tmp_path / "animation.mp4"
    assert main(["animate", "--prompt", "a red circle on a gray background", "--duration", "1", "--fps", "6",
                 "--motion", "zoomin", "--model", "demo", "-o", str(animation), "--steps", "6"]) == 0
    assert iio.imread(animation, index=None).shape == (7, 64, 64, 3)  # int(1 s * 6 fps) + 1


def test_demo_model_missing_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "WEIGHTS", tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="demo_recipe.py"):
        load_pipeline("demo", torch.float32, "cpu")
    assert main(["generate", "a red circle", "--model", "demo", "-o", str(tmp_path / "x.mp4")]) == 2
    assert "demo model is not in this install" in capsys.readouterr().err


def test_prompt_scenes_cover_a_split_before_repeating():
    train = all_scenes(held_out=False)
    scenes = prompt_scenes(len(train) + 5, held_out=False, seed=1)
    assert set(scenes[: len(train)]) == set(train) and set(scenes[len(train):]) <= set(train)
    assert scenes == prompt_scenes(len(train) + 5, held_out=False, seed=1)
    assert {(s.colour, s.shape) for s in prompt_scenes(18, held_out=True)} == {
        (s.colour, s.shape) for s in all_scenes(held_out=True)}


def test_score_reads_world_videos_as_their_prompts_and_penalises_wrong_ones():
    scenes = prompt_scenes(12, held_out=False, seed=0)
    videos = rendered_videos(scenes, frames=45, size=64)
    perfect = score(scenes, videos)
    assert perfect["colour"] == perfect["shape"] == perfect["motion"] == 1.0
    assert [perfect[f"shape: {shape}"] for shape in SHAPES] == [1.0, 1.0, 1.0]  # 12 prompts name all three
    # Circles prompted as squares: per prompted shape, squares are right only for the real squares; no circle figure.
    misnamed = [replace(scene, shape="square") if scene.shape == "circle" else scene for scene in scenes]
    wrong = score(misnamed, videos)
    squares, circles = (sum(scene.shape == shape for scene in scenes) for shape in ("square", "circle"))
    assert wrong["shape"] == pytest.approx(1 - circles / len(scenes)) and wrong["colour"] == 1.0
    assert wrong["shape: square"] == pytest.approx(squares / (squares + circles)) and wrong["shape: triangle"] == 1.0
    assert np.isnan(wrong["shape: circle"])
    assert perfect["roughness"] < 1.0  # constant-velocity paths
    backwards = score(scenes, videos[:, ::-1])  # reversed time: every motion is its opposite
    assert backwards["motion"] == 0.0 and backwards["colour"] == 1.0
    still = score(scenes, np.repeat(videos[:, :1], 45, axis=1))
    assert still["motion"] == 0.0


def test_world_videos_through_the_demo_movq_keep_their_colour_and_motion():
    scenes = prompt_scenes(4, held_out=False, seed=2)
    videos = rendered_videos(scenes, frames=16, size=64)
    through = autoencoded_videos(load_pipeline("demo", torch.float32, "cpu"), videos)
    assert through.shape == videos.shape
    figures = score(scenes, through)
    assert figures["colour"] == 1.0 and figures["motion"] == 1.0  # (shape is what its 8x8 latents lose: docs/demo.md)


def test_fvd_clips_and_fvd():
    videos = rendered_videos(prompt_scenes(4, held_out=False), frames=45, size=64)
    clips = fvd_clips(videos)
    assert clips.shape == (4, FVD_FRAMES, 64, 64, 3) and clips.dtype == np.uint8
    np.testing.assert_array_equal(clips[:, 1], (videos[:, 2] * 255).round().astype(np.uint8))
    with pytest.raises(ValueError, match="too short"):
        fvd_clips(videos[:, :20])
    # A stand-in feature network that sees where colour is over time (I3D itself is tested in test_evaluation_i3d).
    features = torch.nn.Sequential(torch.nn.AdaptiveAvgPool3d((4, 2, 2)), torch.nn.Flatten())
    still = np.repeat(videos[:, :1], 45, axis=1)
    assert fvd(features, videos, videos) == pytest.approx(0.0, abs=1e-6)
    assert fvd(features, videos, still) > 0.01
