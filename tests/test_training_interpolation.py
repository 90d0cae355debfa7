"""Interpolation trainer on tiny models (CPU): clip split, the whole U-Net trains, loss falls, export generates."""

from pathlib import Path

import pytest
import torch
from conftest import fixed_loss

from kandinsky_video import KandinskyVideoInterpolationUNet
from kandinsky_video.data import ClipKey, TextVideoDataset, collate_clips, load_records
from kandinsky_video.data.synthetic import write_square_videos
from kandinsky_video.models.unet_interpolation import interleave_keyframes, split_groups
from kandinsky_video.testing import tiny_pipeline
from kandinsky_video.training import load_config, make_task, train
from kandinsky_video.training.tasks import split_clip

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_interpolation.yaml"


@pytest.mark.parametrize("k, groups", [(3, 8), (1, 2), (5, 3)])
def test_split_clip_is_undone_by_the_pipeline_assembly(k, groups):
    latents = torch.randn(2, 4, (k + 1) * groups + 1, 3, 5)
    keyframes, targets = split_clip(latents, k)
    assert keyframes.shape == (2, 4, groups + 1, 3, 5) and targets.shape == (2, k * 4, groups, 3, 5)
    torch.testing.assert_close(interleave_keyframes(keyframes, split_groups(targets, k)), latents, rtol=0, atol=0)


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    videos = write_square_videos(tmp_path_factory.mktemp("videos"), count=1, num_frames=40)
    run = tmp_path_factory.mktemp("run")
    config = load_config("interpolation", CONFIG, [
        f"data.source={videos}", f"run.output_dir={run}", "optim.steps=20", "optim.gradient_accumulation=1",
        "optim.batch_size=2", "optim.lr=3e-3", "optim.weight_decay=0", "interpolation.uncond_prob=0",
        "run.log_every=10", "run.checkpoint_every=20", "run.report_to=[]",
    ])
    return config, train(config)


def test_whole_model_trains_and_loss_falls(overfit):
    config, export = overfit
    task = make_task(config)  # the initial tiny models again (seeded)
    task.place(torch.device("cpu"), torch.float32, validating=False)
    dataset = TextVideoDataset(load_records(config.data.source), task.clip_spec(), config.data.resolution)
    batch = collate_clips([dataset[ClipKey(0, (0, position))] for position in range(4)])

    before, initial = fixed_loss(task, batch), {key: value.clone() for key, value in task.model.state_dict().items()}
    trained = KandinskyVideoInterpolationUNet.from_pretrained(export / "interpolation_unet").state_dict()
    task.model.load_state_dict(trained)
    assert fixed_loss(task, batch) < 0.9 * before
    # The whole U-Net trains, except what only feeds the query side of attention over the one-token null context
    # (softmax over a single unmasked token is 1, so the output ignores the query): q, k and the cross-attention
    # blocks' input norms.
    unchanged = [key for key, value in initial.items() if torch.equal(value, trained[key])]
    assert all(key.endswith(("to_q.weight", "to_k.weight")) or ".in_norm." in key for key in unchanged), unchanged
    assert len(unchanged) < len(initial) // 5


def test_export_generates_in_the_pipeline(overfit):
    _, export = overfit
    pipeline = tiny_pipeline()
    trained = KandinskyVideoInterpolationUNet.from_pretrained(export / "interpolation_unet")
    pipeline.register_modules(interpolation_unet=trained)
    pipeline.set_progress_bar_config(disable=True)
    video = pipeline("a red square moving right", height=64, width=64, preset="medium", num_keyframes=2,
                     num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert video.frames.shape == (1, 5, 64, 64, 3)


def test_a_fresh_model_takes_the_image_conv_where_asked_and_trains_only_from_min_timestep(tmp_path):
    """From a pipeline without an interpolation U-Net: interpolation.image_conv_on places the image U-Net's input
    conv, interpolation.min_timestep bounds the noise levels the loss draws."""
    folder = tmp_path / "pipeline"
    pipeline = tiny_pipeline()
    pipeline.register_modules(interpolation_unet=None, interpolation_scheduler=None)
    pipeline.save_pretrained(folder)
    videos = write_square_videos(tmp_path / "videos", count=1, num_frames=40)
    config = load_config("interpolation", CONFIG, [
        f"model={folder}", f"data.source={videos}", f"run.output_dir={tmp_path / 'run'}",
        "interpolation.image_conv_on=left_keyframe", "interpolation.min_timestep=990",
    ])
    task = make_task(config)
    task.place(torch.device("cpu"), torch.float32, validating=False)

    image_conv = task.pipeline.unet.spatial.conv_in.weight
    conv_in, channels = task.model.spatial.conv_in.weight, image_conv.shape[1]
    torch.testing.assert_close(conv_in[:, :channels], image_conv, rtol=0, atol=0)
    assert not conv_in[:, channels:].any()

    timesteps = []
    task.model.register_forward_pre_hook(lambda module, args: timesteps.append(args[2]))
    dataset = TextVideoDataset(load_records(config.data.source), task.clip_spec(), config.data.resolution)
    batch = collate_clips([dataset[ClipKey(0, (0, position))] for position in range(4)])
    fixed_loss(task, batch)
    drawn = torch.cat(timesteps)
    assert len(drawn) == 8 * 4 and drawn.min() >= 990 and drawn.max() <= 999
