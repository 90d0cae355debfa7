"""``kandinsky-video eval`` end to end on tiny videos with tiny random networks (no real weights, no downloads)."""

import argparse
import json

import numpy as np
import pytest

from kandinsky_video.cli import main
from kandinsky_video.evaluation.cli import add_eval_parser
from kandinsky_video.evaluation.fvd import FVD_PROTOCOLS, fvd_from_features, i3d_features
from kandinsky_video.evaluation.generate import generate_samples, read_manifest
from kandinsky_video.evaluation.i3d_weights import save_i3d
from kandinsky_video.evaluation.testing import tiny_c3d, tiny_clip, tiny_i3d
from kandinsky_video.evaluation.videos import list_videos, read_video, resize_square, write_video


def write_videos(folder, count: int, frames: int, size: tuple[int, int], seed: int, prefix: str = "video") -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        base = rng.integers(0, 256, (1, *size, 3))
        drift = rng.integers(-20, 21, (frames, 1, 1, 3))  # videos differ in colour drift, so features differ
        write_video(folder / f"{prefix}_{i}.mp4", np.clip(base + drift, 0, 255).astype(np.uint8))


@pytest.fixture
def folders(tmp_path):
    write_videos(tmp_path / "real", count=6, frames=20, size=(36, 44), seed=0)
    write_videos(tmp_path / "real", count=1, frames=8, size=(36, 44), seed=9, prefix="short")  # skipped
    write_videos(tmp_path / "fake", count=10, frames=16, size=(32, 32), seed=1)  # IS protocols use 10 splits
    i3d = tiny_i3d()
    save_i3d(i3d.state_dict(), i3d.config, tmp_path / "tiny_i3d.safetensors", source="test")
    c3d = tiny_c3d()
    arrays = {
        f"{k.split('.')[0]}/{'W' if k.endswith('weight') else 'b'}": v.numpy() for k, v in c3d.c3d.state_dict().items()
    }
    np.savez(tmp_path / "c3d.npz", **arrays)
    mean = np.zeros((3, 16, 128, 171), np.float32)
    mean[:, :, 8:120, 8:120] = c3d.mean_crop.numpy()
    np.savez(tmp_path / "mean2.npz", mean=mean)
    return tmp_path, i3d


def folders_command(tmp_path, metrics: str = "fvd") -> list[str]:
    return [
        "eval", "folders", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--metrics", metrics,
        "--i3d-weights", str(tmp_path / "tiny_i3d.safetensors"), "--c3d-weights", str(tmp_path / "c3d.npz"),
        "--c3d-mean", str(tmp_path / "mean2.npz"), "--resolution", "32", "--real-offset", "start",
        "--batch-size", "4", "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
    ]  # fmt: skip


def test_eval_folders_end_to_end_matches_direct_fvd(folders):
    tmp_path, i3d = folders
    assert main(folders_command(tmp_path, "fvd,is")) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    fvd = results["metrics"]["fvd"]

    def clips(folder):
        videos = [read_video(path) for path in list_videos(folder)]
        return [resize_square(video[:16], 32) for video in videos if len(video) >= 16]

    protocol = FVD_PROTOCOLS["styleganv"]
    real = i3d_features(i3d, clips(tmp_path / "real"), protocol)
    fake = i3d_features(i3d, clips(tmp_path / "fake"), protocol)
    assert fvd["value"] == pytest.approx(fvd_from_features(real, fake, protocol), rel=1e-6)
    assert fvd["value"] > 1.0  # the tiny I3D tells these videos apart: the comparison above is not 0 == 0
    assert (fvd["num_real"], fvd["num_fake"], fvd["real_too_short"]) == (6, 10, 1)
    assert fvd["protocol"]["covariance"] == "biased" and len(fvd["i3d_sha256"]) == 64
    assert results["metrics"]["is"]["num_videos"] == 10 and results["metrics"]["is"]["mean"] >= 1.0
    assert results["options"]["resolution"] == 32 and results["data"]["video_writer"]["codec"] == "libx264rgb"
    assert "| FVD |" in (tmp_path / "out" / "report.md").read_text()

    assert main(folders_command(tmp_path)) == 0  # second run: real statistics come from the cache
    again = json.loads((tmp_path / "out" / "results.json").read_text())["metrics"]["fvd"]
    assert again["value"] == pytest.approx(fvd["value"], rel=1e-12) and again["real_too_short"] is None


def test_main_cli_can_mount_the_eval_parser(folders):
    tmp_path, _ = folders
    parser = argparse.ArgumentParser(prog="kandinsky-video")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(folders_command(tmp_path) + ["--fvd-protocol", "tf"])
    args.run(args)
    assert json.loads((tmp_path / "out" / "results.json").read_text())["metrics"]["fvd"]["protocol"]["name"] == "tf"


def test_eval_msrvtt_clipsim_on_pregenerated_samples(tmp_path, capsys):
    videos = [{"video_id": f"video{7010 + i}", "split": "test"} for i in range(3)]
    sentences = [
        {"sen_id": i, "video_id": v["video_id"], "caption": "a dog on the beach"} for i, v in enumerate(videos)
    ]
    (tmp_path / "msrvtt.json").write_text(json.dumps({"videos": videos, "sentences": sentences}))
    model, tokenizer, processor = tiny_clip()
    for part in (model, tokenizer, processor):
        part.save_pretrained(tmp_path / "clip")
    command = ["eval", "msrvtt", "--msrvtt-json", str(tmp_path / "msrvtt.json"), "--samples-dir", str(tmp_path / "s"),
               "--clip-model", str(tmp_path / "clip")]  # fmt: skip

    assert main(command) == 2  # nothing generated yet and no --model: a clear error, not a crash
    assert "3 of 3 samples are not in" in capsys.readouterr().err
    rng = np.random.default_rng(0)

    def generate(prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        return [rng.integers(0, 256, (3, 24, 24, 3), np.uint8) for _ in prompts]

    generate_samples(read_manifest(tmp_path / "s"), generate, tmp_path / "s")
    assert main(command) == 0
    clip = json.loads((tmp_path / "s" / "results.json").read_text())["metrics"]["clipsim"]
    assert clip["num_videos"] == 3 and clip["num_frames"] == 9 and -1 <= clip["value"] <= 1


def test_eval_ucf101_generation_loads_the_pipeline_and_says_how_to_get_weights(tmp_path, capsys):
    splits = tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 YoYo\n")
    (splits / "trainlist01.txt").write_text("YoYo/v_YoYo_g08_c01.avi 1\n")
    command = ["eval", "ucf101", "--ucf101-splits", str(splits), "--samples-dir", str(tmp_path / "s"),
               "--num-videos", "3", "--metrics", "is", "--model", str(tmp_path / "no_model")]  # fmt: skip
    assert main(command) == 2
    error = capsys.readouterr().err
    assert "no_model does not exist" in error and "kandinsky-video convert" in error
    assert json.loads((tmp_path / "s" / "generation.json").read_text())["preset"] == "medium"
