"""Sample generation through a generate_fn callable: lossless files, resume, sharding, manifest."""

import math
from contextlib import contextmanager

import numpy as np
import pytest

from kandinsky_video.evaluation.generate import (
    Sample,
    generate_samples,
    pipeline_generate_fn,
    read_manifest,
    sample_path,
    write_manifest,
)
from kandinsky_video.evaluation.videos import read_video, write_video
from kandinsky_video.testing import tiny_pipeline

SAMPLES = [Sample(f"s{i:02d}", f"prompt {i}", seed=10 + i) for i in range(5)]


def fake_generate(calls: list):
    """A generate_fn whose videos encode their seed, recording each call."""

    def generate(prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        calls.append(list(seeds))
        return [np.random.default_rng(seed).integers(0, 256, (4, 10, 14, 3), dtype=np.uint8) for seed in seeds]

    return generate


class TwoProcesses:
    """What accelerate's state offers a generation loop, for process ``index`` of 2 (contiguous shares)."""

    process_index, num_processes = 0, 2

    def __init__(self, index: int):
        self.process_index = index

    @contextmanager
    def split_between_processes(self, items):
        per_process = math.ceil(len(items) / self.num_processes)
        yield items[self.process_index * per_process : (self.process_index + 1) * per_process]

    def wait_for_everyone(self):
        pass


def test_videos_round_trip_exactly(tmp_path):
    video = np.random.default_rng(0).integers(0, 256, (5, 18, 22, 3), dtype=np.uint8)
    write_video(tmp_path / "v.mp4", video)
    np.testing.assert_array_equal(read_video(tmp_path / "v.mp4"), video)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # the partial file was renamed, not left behind
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "w.mp4", video.astype(np.float32))


def test_generation_resumes_where_it_stopped(tmp_path):
    calls = []
    assert generate_samples(SAMPLES, fake_generate(calls), tmp_path, batch_size=2) == 5
    assert calls == [[10, 11], [12, 13], [14]]
    np.testing.assert_array_equal(read_video(sample_path(tmp_path, SAMPLES[3])), fake_generate([])(["x"], [13])[0])
    sample_path(tmp_path, SAMPLES[2]).unlink()
    calls.clear()
    assert generate_samples(SAMPLES, fake_generate(calls), tmp_path, batch_size=2) == 1
    assert calls == [[12]]


def test_processes_share_the_full_list_without_overlap(tmp_path):
    sample_path(tmp_path, SAMPLES[0]).parent.mkdir(exist_ok=True)
    write_video(sample_path(tmp_path, SAMPLES[4]), np.zeros((2, 4, 4, 3), np.uint8))  # done before: skipped
    seen = []
    for index in (0, 1):
        calls = []
        generate_samples(SAMPLES, fake_generate(calls), tmp_path, batch_size=8, state=TwoProcesses(index))
        seen.append(sum(calls, []))
    assert seen == [[10, 11, 12], [13]]


def test_generate_fn_output_is_checked(tmp_path):
    with pytest.raises(ValueError, match="returned 0 videos for 1"):
        generate_samples(SAMPLES[:1], lambda prompts, seeds: [], tmp_path)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8"):
        generate_samples(SAMPLES[:1], lambda prompts, seeds: [np.zeros((2, 4, 4), np.uint8)], tmp_path)


def test_manifest_records_samples_and_refuses_a_different_run(tmp_path):
    write_manifest(tmp_path, SAMPLES, {"benchmark": "toy"})
    write_manifest(tmp_path, SAMPLES, {"benchmark": "toy"})  # same run again: fine
    assert read_manifest(tmp_path) == SAMPLES
    with pytest.raises(ValueError, match="new --samples-dir"):
        write_manifest(tmp_path, SAMPLES[:2], {"benchmark": "toy"})


def test_pipeline_adapter_gives_one_seeded_uint8_video_per_sample(tmp_path):
    pipeline = tiny_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    generate = pipeline_generate_fn(pipeline, preset="low", height=64, width=64, num_keyframes=4, num_inference_steps=2)
    first, again, other = generate(["a cat", "a cat", "a cat"], [1, 1, 2])
    assert first.shape == (4, 64, 64, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)  # the seed alone decides the video, whatever its batch
    assert not np.array_equal(first, other)
    assert generate_samples(SAMPLES[:1], generate, tmp_path) == 1 and sample_path(tmp_path, SAMPLES[0]).is_file()
