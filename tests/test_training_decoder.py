"""MoVQ Video decoder trainer on the tiny MoVQ (CPU): temporal-only vs whole decoder, frozen encoder, export."""

from pathlib import Path

import pytest
import torch

from kandinsky_video import MoVQVideo
from kandinsky_video.data.synthetic import write_square_videos
from kandinsky_video.pipelines.pipeline_kandinsky_video import load_movq
from kandinsky_video.testing import tiny_movq, tiny_pipeline
from kandinsky_video.training import load_config, train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_decoder.yaml"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return write_square_videos(tmp_path_factory.mktemp("videos"), count=2, num_frames=24, height=32, width=32)


def run_decoder(videos: Path, folder: Path, *overrides: str) -> MoVQVideo:
    config = load_config("decoder", CONFIG, [f"data.source={videos}", f"run.output_dir={folder}",
                                             "data.resolution=32", "run.report_to=[]", *overrides])
    return load_movq(train(config) / "movq")


def changed(before: dict, after: dict, prefix: str) -> tuple[list[str], list[str]]:
    """(changed, unchanged) keys starting with ``prefix``."""
    keys = [key for key in before if key.startswith(prefix)]
    same = [key for key in keys if torch.equal(before[key], after[key])]
    return [key for key in keys if key not in same], same


def test_temporal_only_keeps_every_image_weight(videos, tmp_path):
    trained = run_decoder(videos, tmp_path, "optim.steps=3", "decoder.train_decoder=false")
    assert isinstance(trained, MoVQVideo)
    image, after = tiny_movq().state_dict(), trained.state_dict()
    assert all(torch.equal(tensor, after["movq." + key]) for key, tensor in image.items()), "image MoVQ weights changed"
    fresh = MoVQVideo.from_movq(tiny_movq()).state_dict()
    moved, still = changed(fresh, after, "temporal.")
    assert moved and not still, f"temporal layers that did not train: {still}"


def test_whole_decoder_trains_with_the_encoder_frozen(videos, tmp_path):
    trained = run_decoder(videos, tmp_path, "optim.steps=2", "decoder.train_decoder=true", "decoder.loss=l2")
    before, after = MoVQVideo.from_movq(tiny_movq()).state_dict(), trained.state_dict()
    for frozen in ("movq.encoder.", "movq.quant_conv.", "movq.quantize."):
        assert not changed(before, after, frozen)[0], f"{frozen} changed"
    for trained_part in ("movq.decoder.", "movq.post_quant_conv."):
        moved, still = changed(before, after, trained_part)
        assert moved and not still, f"{trained_part} weights that did not train: {still}"


def test_export_decodes_in_the_pipeline(videos, tmp_path):
    pipeline = tiny_pipeline()
    pipeline.register_modules(movq=run_decoder(videos, tmp_path, "optim.steps=1"))
    pipeline.set_progress_bar_config(disable=True)
    video = pipeline("a red square moving right", height=64, width=64, num_keyframes=3, num_inference_steps=2,
                     generator=torch.Generator().manual_seed(0))
    assert video.frames.shape == (1, 3, 64, 64, 3)
