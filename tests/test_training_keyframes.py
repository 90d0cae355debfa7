"""Keyframe trainer on tiny models and a tiny moving-square clip (CPU): what trains, loss, export, exact resume."""

import json
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch
from conftest import fixed_loss
from safetensors.torch import load_file

from kandinsky_video import KandinskyVideoPipeline
from kandinsky_video.models import KandinskyVideoUNet
from kandinsky_video.models.unet_keyframe import TEMPORAL_CONFIG_NAME
from kandinsky_video.data import ClipKey, TextVideoDataset, collate_clips, load_records
from kandinsky_video.data.synthetic import write_square_videos
from kandinsky_video.testing import tiny_pipeline
from kandinsky_video.training import load_config, make_task, train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_keyframes.yaml"
STEPS = 30


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return write_square_videos(tmp_path_factory.mktemp("videos"), count=2, num_frames=40)


@pytest.fixture(scope="module")
def overfit(videos, tmp_path_factory):
    """30 steps on one clip, with gradient checkpointing, a validation pass at the end and a pipeline export."""
    one = tmp_path_factory.mktemp("one")
    (one / "manifest.csv").write_text(f"video,caption\n{videos.parent / '000.mp4'},a red square moving right\n")
    run = tmp_path_factory.mktemp("run")
    config = load_config("keyframes", CONFIG, [
        f"data.source={one / 'manifest.csv'}", f"run.output_dir={run}", f"optim.steps={STEPS}",
        "optim.gradient_accumulation=1", "optim.batch_size=2", "optim.lr=1e-2", "optim.weight_decay=0",
        "optim.gradient_checkpointing=true", "keyframes.uncond_prob=0", "run.log_every=10",
        f"run.checkpoint_every={STEPS}", f"run.validate_every={STEPS}", "run.validation_inference_steps=2",
        "run.validation_keyframes=2", "run.export_pipeline=true",
    ])
    return config, train(config)


def test_only_temporal_weights_change(overfit):
    config, export = overfit
    initial, trained = tiny_pipeline(), KandinskyVideoPipeline.from_pretrained(export / "pipeline")
    frozen = [(name, getattr(initial, name), getattr(trained, name))
              for name in ("text_encoder", "text_projection", "movq", "interpolation_unet")]
    for name, before, after in [*frozen, ("unet.spatial", initial.unet.spatial, trained.unet.spatial)]:
        after = after.state_dict()
        changed = [key for key, tensor in before.state_dict().items() if not torch.equal(tensor, after[key])]
        assert not changed, f"frozen {name} weights changed: {changed}"
    temporal = trained.unet.temporal_state_dict()
    unchanged = [key for key, value in initial.unet.temporal_state_dict().items() if torch.equal(value, temporal[key])]
    assert not unchanged, f"temporal weights did not train: {unchanged}"
    # Checkpoints hold the trainable tensors only (the frozen U-Net comes from the pretrained model on resume).
    checkpoint = Path(config.run.output_dir) / "checkpoints" / f"checkpoint-{STEPS:08d}"
    checkpoint = load_file(checkpoint / "trainable_0.safetensors")
    assert set(checkpoint) == set(temporal)


def test_loss_falls_on_one_clip(overfit):
    config, export = overfit
    task = make_task(config)
    task.place(torch.device("cpu"), torch.float32, validating=False)
    dataset = TextVideoDataset(load_records(config.data.source), task.clip_spec(), config.data.resolution)
    batch = collate_clips([dataset[ClipKey(0, (0, position))] for position in range(4)])
    before = fixed_loss(task, batch)
    task.model.load_temporal(export / "unet_temporal")
    after = fixed_loss(task, batch)
    assert after < 0.97 * before, (before, after)


def test_export_loads_into_the_pipeline_and_generates(overfit):
    _, export = overfit
    pipeline = tiny_pipeline()
    pipeline.unet.load_temporal(export / "unet_temporal")
    exported = KandinskyVideoPipeline.from_pretrained(export / "pipeline").unet.state_dict()
    loaded = pipeline.unet.state_dict()
    assert all(torch.equal(tensor, loaded[key]) for key, tensor in exported.items())
    pipeline.set_progress_bar_config(disable=True)
    video = pipeline("a red square moving right", height=64, width=64, num_keyframes=3, num_inference_steps=2,
                     generator=torch.Generator().manual_seed(0))
    assert video.frames.shape == (1, 3, 64, 64, 3) and 0 <= video.frames.min() <= video.frames.max() <= 1


def test_run_folder_has_validation_video_logs_and_configs(overfit):
    config, export = overfit
    run = Path(config.run.output_dir)
    assert iio.imread(run / "validation" / f"step-{STEPS:08d}" / "00.mp4").shape == (2, 64, 64, 3)
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    assert (run / "metrics.jsonl").read_text().count('"loss"') == STEPS // 10
    for folder in (run, export, run / "checkpoints" / f"checkpoint-{STEPS:08d}"):
        assert load_config("keyframes", folder / "config.yaml") == config


def test_stopped_and_resumed_run_ends_with_the_same_weights(videos, tmp_path):
    """4 steps straight vs 2 steps, stop, resume to 4: bit-identical weights, optimiser, EMA and data position."""
    common = [f"data.source={videos}", "run.report_to=[]", "optim.warmup_steps=3", "optim.ema_decay=0.9",
              "keyframes.uncond_prob=0.5", "run.checkpoint_every=2"]
    straight = train(load_config("keyframes", CONFIG, common + [f"run.output_dir={tmp_path / 'a'}", "optim.steps=4"]))
    train(load_config("keyframes", CONFIG, common + [f"run.output_dir={tmp_path / 'b'}", "optim.steps=2"]))
    resumed = train(load_config("keyframes", CONFIG, common + [f"run.output_dir={tmp_path / 'b'}", "optim.steps=4"]))
    for name in ("export/unet_temporal/temporal.safetensors",
                 "checkpoints/checkpoint-00000004/trainable_0.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        assert all(torch.equal(a[key], b[key]) for key in a), name
    # With EMA on, the export holds the EMA weights, the checkpoint the live ones.
    ema = load_file(straight / "unet_temporal" / "temporal.safetensors")
    live = load_file(tmp_path / "a" / "checkpoints" / "checkpoint-00000004" / "trainable_0.safetensors")
    assert set(ema) == set(live) and not all(torch.equal(ema[key], live[key]) for key in ema)
    assert resumed == tmp_path / "b" / "export"


def test_temporal_architecture_is_chosen_in_the_config(videos, tmp_path):
    """keyframes.temporal_placement / temporal_conv build fresh temporal layers of that kind on the frozen spatial
    U-Net; the export records them, so assembling from Kandinsky 3.0 rebuilds the same architecture."""
    config = load_config("keyframes", CONFIG, [
        f"data.source={videos}", "run.report_to=[]", f"run.output_dir={tmp_path}", "optim.steps=2",
        "keyframes.temporal_placement=layers", "keyframes.temporal_conv=3d"])
    task = make_task(config)
    unet = task.model
    assert (unet.config.temporal_placement, unet.config.temporal_conv) == ("layers", "3d")
    base = tiny_pipeline().unet  # what model=tiny starts from (same seed): released placement
    assert base.config.temporal_placement == "blocks"
    assert all(torch.equal(unet.spatial.state_dict()[k], v) for k, v in base.spatial.state_dict().items())
    assert all(not p.requires_grad for p in unet.spatial.parameters())

    export = train(config)
    saved = json.loads((export / "unet_temporal" / TEMPORAL_CONFIG_NAME).read_text())
    assert (saved["temporal_placement"], saved["temporal_conv"]) == ("layers", "3d")
    rebuilt = KandinskyVideoUNet.from_kandinsky3(base.spatial, temporal_placement="layers", temporal_conv="3d")
    rebuilt.load_temporal(export / "unet_temporal")
    trained = load_file(export / "unet_temporal" / "temporal.safetensors")
    assert trained.keys() == rebuilt.temporal_state_dict().keys()
    assert all(torch.equal(trained[k], v) for k, v in rebuilt.temporal_state_dict().items())

    with pytest.raises(ValueError, match="choose one of"):
        load_config("keyframes", CONFIG, ["keyframes.temporal_placement=everywhere"])
