"""``kandinsky-video eval`` end to end on tiny videos with tiny random networks (no real weights, no downloads)."""

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from kandinsky_video.cli import main
from kandinsky_video.evaluation.benchmark import SkippedVideos, clips_from_videos
from kandinsky_video.evaluation.cli import add_eval_parser
from kandinsky_video.evaluation.fvd import FVD_PROTOCOLS, fvd_from_features, i3d_features
from kandinsky_video.evaluation.generate import Sample, generate_samples, read_manifest, sample_path, write_manifest
from kandinsky_video.evaluation.i3d_weights import save_i3d
from kandinsky_video.evaluation.testing import tiny_c3d, tiny_clip, tiny_i3d
from kandinsky_video.evaluation.videos import UnreadableVideo, list_videos, read_video, resize_square, write_video


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


def test_eval_folders_end_to_end_matches_direct_fvd(folders, capsys):
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
    assert (fvd["real_unreadable"], fvd["fake_unreadable"], results["metrics"]["is"]["unreadable"]) == (0, 0, 0)
    assert results["options"]["allow_torchscript"] is False
    assert fvd["protocol"]["covariance"] == "biased" and len(fvd["i3d_sha256"]) == 64
    assert results["metrics"]["is"]["num_videos"] == 10 and results["metrics"]["is"]["mean"] >= 1.0
    assert results["options"]["resolution"] == 32 and results["data"]["video_writer"]["codec"] == "libx264rgb"
    assert "| FVD |" in (tmp_path / "out" / "report.md").read_text()

    assert main(folders_command(tmp_path)) == 2  # an earlier evaluation's results are not replaced silently
    assert "results.json exists (an earlier evaluation); pass --overwrite" in capsys.readouterr().err
    assert main([*folders_command(tmp_path), "--overwrite"]) == 0  # second run: real statistics from the cache
    again = json.loads((tmp_path / "out" / "results.json").read_text())["metrics"]["fvd"]
    assert again["value"] == pytest.approx(fvd["value"], rel=1e-12) and again["real_too_short"] is None


def break_videos(folder) -> list[str]:
    """Turn the last two videos of ``folder`` (sorted) into a corrupt and a truncated file; returns their names."""
    *_, corrupt, truncated = list_videos(folder)
    corrupt.write_bytes(b"not a video " * 100)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # the mp4 index (moov) is written last: this one has none
    return [corrupt.name, truncated.name]


def test_eval_folders_skips_counts_and_names_unreadable_videos(folders, caplog):
    """A corrupt and a truncated video in each set: every metric skips them, warns, and names them in the results."""
    tmp_path, _ = folders
    write_videos(tmp_path / "real", count=2, frames=20, size=(36, 44), seed=3, prefix="zz_broken")
    broken_real = break_videos(tmp_path / "real")
    fake = tmp_path / "fake_samples"
    samples = [Sample(f"s{i:02d}", "a dog on the beach", seed=i) for i in range(12)]
    write_manifest(fake, samples, {})
    rng = np.random.default_rng(5)
    for sample in samples:
        write_video(sample_path(fake, sample), rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))
    broken_fake = break_videos(fake)
    model, tokenizer, processor = tiny_clip()
    for part in (model, tokenizer, processor):
        part.save_pretrained(tmp_path / "clip")
    clip = ["--clip-model", str(tmp_path / "clip")]
    command = [*folders_command(tmp_path, "fvd,is,clipsim"), "--fake", str(fake), *clip]

    with caplog.at_level(logging.WARNING, logger="kandinsky_video.evaluation.benchmark"):
        assert main(command) == 0
    metrics = json.loads((tmp_path / "out" / "results.json").read_text())["metrics"]
    fvd = metrics["fvd"]
    assert (fvd["num_real"], fvd["real_too_short"], fvd["real_unreadable"]) == (6, 1, 2)
    assert [Path(name).name for name in fvd["real_unreadable_files"]] == broken_real
    assert (fvd["num_fake"], fvd["fake_unreadable"]) == (10, 2)
    for result in (metrics["is"], metrics["clipsim"]):
        assert (result["num_videos"], result["unreadable"]) == (10, 2)
    is_names, clip_names = metrics["is"]["unreadable_files"], metrics["clipsim"]["unreadable_files"]
    for names in (fvd["fake_unreadable_files"], is_names, clip_names):
        assert [Path(name).name for name in names] == broken_fake
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"FVD real: skipped 1 too short, 2 unreadable: `{tmp_path / 'real' / broken_real[0]}`" in report
    assert "IS: skipped 0 too short, 2 unreadable" in report and "CLIPSIM: skipped 0 too short, 2 unreadable" in report
    warned = [record.getMessage() for record in caplog.records if "unreadable video" in record.getMessage()]
    assert len(warned) == 8 and all(any(name in line for name in broken_real + broken_fake) for line in warned)


def test_a_set_left_too_small_by_skipping_is_a_clear_error(folders, capsys):
    tmp_path, _ = folders
    fake = tmp_path / "few"
    write_videos(fake, count=5, frames=16, size=(32, 32), seed=4)
    broken = break_videos(fake)
    assert main(folders_command(tmp_path, "is") + ["--fake", str(fake)]) == 2
    error = capsys.readouterr().err
    assert "IS (10 splits): 3 of 5 videos are usable, 10 needed" in error
    assert f"(0 too short, 2 unreadable: {', '.join(broken)})" in error

    with pytest.raises(ValueError, match="FVD generated set: 0 of 2 videos are usable, 2 needed"):
        skipped = SkippedVideos()
        list(clips_from_videos(list_videos(fake)[3:], 16, 1, "start", 32, skipped, what="FVD generated set"))
    assert skipped.unreadable == list_videos(fake)[3:]


def test_read_video_tells_a_missing_file_from_an_unreadable_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_video(tmp_path / "absent.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(UnreadableVideo, match="empty.mp4 cannot be decoded"):
        read_video(tmp_path / "empty.mp4")


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
