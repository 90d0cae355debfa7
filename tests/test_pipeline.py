"""KandinskyVideoPipeline with tiny random components on the CPU."""

import copy

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from kandinsky_video import KandinskyVideoPipeline, MoVQVideo, write_video
from kandinsky_video.pipelines.export import write_strip
from kandinsky_video.testing import tiny_pipeline

SMALL = dict(height=64, width=64, num_inference_steps=2, num_keyframes=4)


@pytest.fixture(scope="module")
def pipe():
    pipeline = tiny_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def pipe_k10():
    pipeline = tiny_pipeline(frames_between=10)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("preset, frames", [("low", 4), ("medium", 13), ("high", 49)])
def test_frame_counts_k3(pipe, preset, frames):
    out = pipe("a red circle", preset=preset, generator=seeded(), output_type="latent", **SMALL)
    assert out.frames.shape == (1, 4, frames, 8, 8)
    assert out.fps == {"low": 2, "medium": 8, "high": 32}[preset]
    assert pipe.interpolation_skips(2) == [3, 1]  # released skip conditioning for k=3


def test_frame_counts_k10(pipe_k10):
    out = pipe_k10("a red circle", preset="medium", generator=seeded(), **SMALL)
    assert out.frames.shape == (1, 11 * 4 - 10, 64, 64, 3)  # 11N - 10
    assert out.fps == 2 * 11
    assert pipe_k10.interpolation_skips(2) == [1, 1]


def test_a_single_step_runs(pipe):
    out = pipe("a red circle", preset="medium", generator=seeded(), output_type="latent", **{**SMALL, "num_inference_steps": 1})
    assert out.frames.shape == (1, 4, 13, 8, 8) and torch.isfinite(out.frames).all()


def test_keyframes_survive_interpolation(pipe):
    low = pipe("a red circle", preset="low", generator=seeded(), output_type="latent", **SMALL).frames
    medium = pipe("a red circle", preset="medium", generator=seeded(), output_type="latent", **SMALL).frames
    torch.testing.assert_close(medium[:, :, ::4], low)


def test_same_seed_same_video_other_seed_other_video(pipe):
    a = pipe("a red circle", generator=seeded(1), **SMALL).frames
    b = pipe("a red circle", generator=seeded(1), **SMALL).frames
    c = pipe("a red circle", generator=seeded(2), **SMALL).frames
    assert a.shape == (1, 4, 64, 64, 3) and a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_prompts_negative_prompts_and_batches(pipe):
    out = pipe(["a red circle", "a blue square"], num_videos_per_prompt=2, generator=seeded(), **SMALL).frames
    assert out.shape == (4, 4, 64, 64, 3)
    plain = pipe("a red circle", generator=seeded(), output_type="latent", **SMALL).frames
    negative = pipe("a red circle", negative_prompt="blurry", generator=seeded(), output_type="latent", **SMALL).frames
    assert (plain - negative).abs().max() > 1e-4


def test_output_types_and_callback(pipe):
    calls = []
    out = pipe("a red circle", preset="medium", generator=seeded(), output_type="pt",
               callback_on_step_end=lambda p, stage, i, t, x: calls.append((stage, i)), **SMALL)
    assert out.frames.shape == (1, 13, 3, 64, 64)
    assert calls == [("keyframes", 0), ("keyframes", 1), ("interpolation 1/1", 0), ("interpolation 1/1", 1)]
    pil = pipe("a red circle", generator=seeded(), output_type="pil", **SMALL).frames
    assert len(pil) == 1 and len(pil[0]) == 4 and pil[0][0].size == (64, 64)


def test_image_movq_and_fresh_movq_video_decode_alike(pipe):
    latents = torch.randn(1, 4, 6, 8, 8)
    image_movq = pipe.movq.movq
    fresh = MoVQVideo.from_movq(image_movq).eval()
    swapped = KandinskyVideoPipeline(**{**pipe.components, "movq": image_movq})
    with torch.no_grad():
        torch.testing.assert_close(swapped.decode(latents, 4), fresh.decode(latents, chunk_size=4), atol=1e-5, rtol=1e-5)


def test_diffusers_scheduler_option(pipe):
    ddim = KandinskyVideoPipeline(**{**pipe.components, "scheduler": DDIMScheduler(beta_schedule="squaredcos_cap_v2")})
    ddim.set_progress_bar_config(disable=True)
    assert ddim("a red circle", generator=seeded(), **SMALL).frames.shape == (1, 4, 64, 64, 3)


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = KandinskyVideoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.movq, MoVQVideo) and loaded.interpolation_unet.config.frames_between == 3
    # Equal up to float noise: reloaded weights sit at other addresses, so CPU kernels may sum in another order.
    np.testing.assert_allclose(
        loaded("a red circle", preset="medium", generator=seeded(), **SMALL).frames,
        pipe("a red circle", preset="medium", generator=seeded(), **SMALL).frames,
        atol=1e-3,
    )


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_file_written_and_read_back(pipe, tmp_path, suffix):
    frames = pipe("a red circle", preset="medium", generator=seeded(), **SMALL).frames[0]
    path = write_video(frames, tmp_path / f"video{suffix}", fps=8)
    read = iio.imread(path, index=None)
    assert read.shape[0] == 13 and read.shape[1:3] == (64, 64)
    if suffix == ".mp4":
        assert iio.immeta(path).get("fps") == 8
        assert np.abs(read.astype(float) - frames * 255).mean() < 20  # lossy codec, same picture
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(ValueError, match=".mp4"):
        write_video(frames, tmp_path / "video.avi", fps=8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prompt=""), "non-empty"),
        (dict(prompt="a", height=96), "multiples of 64"),
        (dict(prompt="a", preset="ultra"), "unknown preset"),
        (dict(prompt="a", preset="medium", num_keyframes=1), "too few"),
        (dict(prompt=["a", "b"], negative_prompt=["c"]), "1 negative prompts for 2"),
        (dict(prompt="a", output_type="gif"), "output_type"),
        (dict(prompt="a", latents=torch.zeros(1, 4, 3, 8, 8)), "latents must have shape"),
    ],
)
def test_bad_inputs(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe(**{**SMALL, **kwargs})


def test_unguided_interpolation_is_the_conditional_model_alone(pipe):
    """w = 0 skips the unconditional pass and equals the limit of the guided formula."""
    unet = copy.deepcopy(pipe.interpolation_unet)
    torch.nn.init.normal_(unet.spatial.conv_in.weight, std=0.1)  # keyframe channels start at zero: make them count
    reading = KandinskyVideoPipeline(**{**pipe.components, "interpolation_unet": unet})
    reading.set_progress_bar_config(disable=True)
    batches = []
    unet.register_forward_hook(lambda module, args, out: batches.append(len(args[0])))
    videos = {w: reading("a red circle", preset="medium", generator=seeded(), output_type="latent",
                         interpolation_guidance_scale=w, **SMALL).frames for w in (0.0, 1e-6, 1.0)}
    steps = SMALL["num_inference_steps"]
    assert batches == [1] * steps + [2] * 2 * steps
    torch.testing.assert_close(videos[0.0], videos[1e-6], rtol=0, atol=1e-4)
    assert (videos[0.0] - videos[1.0]).abs().max() > 1e-3  # the unconditional branch does differ


def test_interpolating_without_an_interpolation_model(pipe):
    keyframes_only = KandinskyVideoPipeline(**{**pipe.components, "interpolation_unet": None, "interpolation_scheduler": None})
    with pytest.raises(ValueError, match="no interpolation_unet"):
        keyframes_only("a", preset="high", **{k: v for k, v in SMALL.items()})


def test_write_strip(tmp_path):
    videos = np.random.default_rng(0).random((2, 10, 8, 8, 3)).astype(np.float32)
    picks = write_strip(videos, tmp_path / "strip.png", frames=6, scale=2)
    assert picks.tolist() == [0, 2, 4, 5, 7, 9]
    strip = iio.imread(tmp_path / "strip.png")
    assert strip.shape == (2 * 8 * 2, 6 * 8 * 2, 3)
    expected = (videos[1, 9] * 255).round().astype(np.uint8).repeat(2, axis=0).repeat(2, axis=1)
    np.testing.assert_array_equal(strip[16:, 80:], expected)  # second row, last column: frame 9 of video 1
