"""data.cache_dir: frozen MoVQ latents and text context cached per sampled clip (keyframes, interpolation; the
text-to-image base's in test_demo_recipe.py)."""

import json
from pathlib import Path

import pytest
import torch
from diffusers import VQModel
from safetensors.torch import load_file
from transformers import T5Config, T5EncoderModel

from kandinsky_video.data import ClipKey, TextVideoDataset, collate_clips, fingerprint, load_records
from kandinsky_video.data.synthetic import write_square_videos
from kandinsky_video.models.text_encoder import KandinskyTextEncoder
from kandinsky_video.training import load_config, make_task, train
from kandinsky_video.training import tasks as tasks_module

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    # 13 frames = exactly one keyframe clip (4 frames, stride 4): every epoch samples the same frames, so the cache
    # must serve every clip after the first epoch.
    return write_square_videos(tmp_path_factory.mktemp("videos"), count=2, num_frames=13)


@pytest.fixture
def counted(monkeypatch) -> dict:
    """Counts MoVQ encodes (clips) and text encodes (captions) made by the trainers."""
    calls = {"clips": 0, "captions": 0}
    encode_video, encode_text = tasks_module.encode_video, KandinskyTextEncoder.encode

    def count_video(movq, video):
        calls["clips"] += len(video)
        return encode_video(movq, video)

    def count_text(self, prompts, *args, **kwargs):
        calls["captions"] += len(prompts)
        return encode_text(self, prompts, *args, **kwargs)

    monkeypatch.setattr(tasks_module, "encode_video", count_video)
    monkeypatch.setattr(KandinskyTextEncoder, "encode", count_text)
    return calls


def run(task: str, source: Path, folder: Path, *overrides: str) -> tuple[list[float], dict]:
    """Train; return the per-step losses and the exported weights."""
    config = load_config(task, CONFIGS / f"tiny_{task}.yaml", [
        f"data.source={source}", f"run.output_dir={folder}", "run.report_to=[]", "run.log_every=1",
        "run.checkpoint_every=100", *overrides,
    ])
    export = train(config)
    losses = [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    weights = next(export.rglob("*.safetensors"))
    return losses, load_file(weights)


def same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[key], b[key]) for key in a)


def test_keyframes_cache_gives_the_same_run_and_is_reused(videos, tmp_path, counted):
    # 3 steps x 2 clips = 3 epochs of the 2 videos; caption dropout on, so it must act after the cache.
    common = ["optim.steps=3", "keyframes.uncond_prob=0.5"]
    plain = run("keyframes", videos, tmp_path / "plain", *common)
    assert counted == {"clips": 6, "captions": 6}

    counted.update(clips=0, captions=0)
    cache = tmp_path / "cache"
    cached = run("keyframes", videos, tmp_path / "cached", *common, f"data.cache_dir={cache}")
    assert cached[0] == plain[0] and same(cached[1], plain[1]), "a cached run must equal the uncached one"
    assert counted == {"clips": 2, "captions": 2}, "epochs 2 and 3 must read the cache"
    assert len(list((cache / "latents").rglob("*.safetensors"))) == 2
    assert len(list((cache / "text").rglob("*.safetensors"))) == 2

    counted.update(clips=0, captions=0)  # a new run with the same cache: nothing to encode
    again = run("keyframes", videos, tmp_path / "again", *common, f"data.cache_dir={cache}")
    assert counted == {"clips": 0, "captions": 0} and same(again[1], plain[1])


def test_interpolation_cache_gives_the_same_run(tmp_path, counted):
    videos = write_square_videos(tmp_path / "videos", count=2, num_frames=16)
    plain = run("interpolation", videos, tmp_path / "plain", "optim.steps=2")
    cached = run("interpolation", videos, tmp_path / "cached", "optim.steps=2", f"data.cache_dir={tmp_path / 'c'}")
    assert cached[0] == plain[0] and same(cached[1], plain[1])
    assert list((tmp_path / "c" / "latents").rglob("*.safetensors")) and not (tmp_path / "c" / "text").exists()


def test_changed_resolution_or_weights_miss_the_cache(videos, tmp_path):
    def latents_of(resolution: int, perturb: bool = False) -> tuple[torch.Tensor, tuple[int, int]]:
        config = load_config("keyframes", CONFIGS / "tiny_keyframes.yaml", [
            f"data.source={videos}", f"data.cache_dir={tmp_path}", f"data.resolution={resolution}"])
        task = make_task(config)
        task.place(torch.device("cpu"), torch.float32, validating=False)
        if perturb:
            with torch.no_grad():
                next(task.pipeline.movq.parameters()).add_(1e-3)
        dataset = TextVideoDataset(load_records(videos), task.clip_spec(), resolution)
        latents = task.clip_latents(collate_clips([dataset[ClipKey(0, (0, 0))]]))
        return latents, (task.cache.hits, task.cache.misses)

    first, counts = latents_of(64)
    assert counts == (0, 1)
    assert torch.equal(latents_of(64)[0], first) and latents_of(64)[1] == (1, 0)
    larger, counts = latents_of(128)
    assert counts == (0, 1) and larger.shape[-2:] == (16, 16)  # not the 64x64 entry (8x8 latents)
    changed, counts = latents_of(64, perturb=True)
    assert counts == (0, 1) and not torch.equal(changed, first)


@pytest.mark.parametrize("model", [
    VQModel(block_out_channels=(8,), norm_num_groups=8, layers_per_block=1, latent_channels=4),
    T5EncoderModel(T5Config(vocab_size=16, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)),
], ids=["diffusers", "transformers"])
def test_the_same_weights_from_another_folder_share_the_identity(model, tmp_path):
    for name in ("a", "b"):
        model.save_pretrained(tmp_path / name)
    first, moved = (type(model).from_pretrained(tmp_path / name) for name in ("a", "b"))
    assert first.config._name_or_path != moved.config._name_or_path
    assert fingerprint(first) == fingerprint(moved)
    with torch.no_grad():
        next(moved.parameters()).add_(1e-3)
    assert fingerprint(first) != fingerprint(moved)


def test_cache_dir_is_rejected_where_nothing_is_cached():
    with pytest.raises(ValueError, match="data.cache_dir"):
        load_config("decoder", None, ["data.cache_dir=/tmp/cache"])


@pytest.mark.parametrize("video_model", [False, True], ids=["MoVQ", "MoVQ Video"])
def test_encoder_chunking_changes_no_latent(monkeypatch, video_model):
    """Frames go through the frozen encoder in chunks (8 on the CPU, a pixel budget on a GPU): memory and speed
    only, never the latents."""
    from kandinsky_video.models import MoVQVideo
    from kandinsky_video.testing import tiny_movq

    movq = MoVQVideo.from_movq(tiny_movq()) if video_model else tiny_movq()
    video = torch.rand(2, 3, 5, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    monkeypatch.setattr(tasks_module, "ENCODE_FRAMES", 1000)
    whole = tasks_module.encode_video(movq, video)
    monkeypatch.setattr(tasks_module, "ENCODE_FRAMES", 3)  # 10 frames: 3 + 3 + 3 + 1 (MoVQ Video: 3 + 2 per clip)
    assert whole.shape == (2, 4, 5, 4, 4)
    torch.testing.assert_close(tasks_module.encode_video(movq, video), whole, rtol=1e-5, atol=1e-6)
