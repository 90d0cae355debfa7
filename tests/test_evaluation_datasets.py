"""Benchmark loaders on tiny fake UCF-101 and MSR-VTT layouts written here."""

import json

import pytest

from kandinsky_video.evaluation.datasets import (
    class_counts,
    load_ucf101_prompts,
    msrvtt_samples,
    read_class_index,
    read_split,
    ucf101_real_videos,
    ucf101_samples,
)

CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
# Folder HandstandPushups holds v_HandStandPushups_* files, and the split lists say so too: real UCF-101 quirks.
TRAIN = [
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi 1",
    "HandstandPushups/v_HandStandPushups_g08_c01.avi 2",
    "HandstandPushups/v_HandStandPushups_g09_c01.avi 2",
    "HandstandPushups/v_HandStandPushups_g10_c01.avi 2",
    "YoYo/v_YoYo_g08_c01.avi 3",
]
TEST = ["YoYo/v_YoYo_g01_c01.avi"]


@pytest.fixture
def ucf(tmp_path):
    root, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    for line in TRAIN + TEST:
        path = root / line.split()[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    crlf = lambda lines: "\r\n".join(lines) + "\r\n"  # noqa: E731
    (splits / "classInd.txt").write_bytes(crlf(f"{i} {name}" for i, name in enumerate(CLASSES, 1)).encode())
    (splits / "trainlist01.txt").write_bytes(crlf(TRAIN).encode())
    (splits / "testlist01.txt").write_bytes(crlf(TEST).encode())
    return root, splits


def test_split_files_with_crlf_parse_clean(ucf):
    _, splits = ucf
    assert read_class_index(splits) == CLASSES
    assert read_split(splits, "testlist01") == ["YoYo/v_YoYo_g01_c01.avi"]
    assert all("\r" not in entry and " " not in entry for entry in read_split(splits))


def test_real_videos_resolve_case_insensitively(ucf, tmp_path):
    root, splits = ucf
    (root / "HandstandPushups" / "v_HandStandPushups_g08_c01.avi").rename(
        root / "HandstandPushups" / "v_HandstandPushups_g08_c01.avi"  # a second case variant on disk
    )
    videos = ucf101_real_videos(root, splits, "trainlist01")
    assert len(videos) == 6 and all(path.is_file() for path in videos)
    assert len(ucf101_real_videos(root, splits, "all")) == 7
    assert [p.name for p in ucf101_real_videos(root, splits, "testlist01")] == ["v_YoYo_g01_c01.avi"]


def test_missing_dataset_names_its_source_and_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="crcv.ucf.edu.*--ucf101-root"):
        ucf101_real_videos(tmp_path / "nowhere", tmp_path, "trainlist01")
    with pytest.raises(FileNotFoundError, match="--ucf101-splits"):
        read_class_index(tmp_path)
    with pytest.raises(FileNotFoundError, match="--msrvtt-json"):
        msrvtt_samples(tmp_path / "test_videodatainfo.json")


def test_class_counts_follow_the_split_and_sum_exactly():
    labels = ["a"] * 2 + ["b"] * 3 + ["c"]
    counts = class_counts(labels, ["a", "b", "c"], total=10)
    assert sum(counts.values()) == 10 and counts == {"a": 3, "b": 5, "c": 2}
    assert sum(class_counts(labels, ["a", "b", "c"], total=2048).values()) == 2048


def test_ucf101_samples_use_class_prompts_and_consecutive_seeds(ucf):
    _, splits = ucf
    prompts = {"applyeyemakeup": "makeup.", "HANDSTANDPUSHUPS": "handstand.", "YoYo": "yoyo."}  # any case
    samples = ucf101_samples(splits, total=12, prompts=prompts, seed=100)
    assert [s.seed for s in samples] == list(range(100, 112))
    assert [s.prompt for s in samples] == ["makeup."] * 4 + ["handstand."] * 6 + ["yoyo."] * 2
    assert samples[4].id == "002_HandstandPushups_00000" and len({s.id for s in samples}) == 12


def test_shipped_prompt_list_covers_101_classes_with_provenance():
    prompts = load_ucf101_prompts()
    assert len(prompts) == 101 and {"HandstandPushups", "YoYo", "ApplyEyeMakeup"} <= set(prompts)
    assert all(prompt.endswith(".") for prompt in prompts.values())


def test_msrvtt_captions_all_or_one_per_test_video(tmp_path):
    videos = [{"video_id": f"video{i}", "split": "test" if i >= 7010 else "train"} for i in (7009, 7010, 7011, 7012)]
    sentences = [
        {"sen_id": 3 * i + k, "video_id": video["video_id"], "caption": f" caption {k} of {video['video_id']} "}
        for i, video in enumerate(videos)
        for k in (2, 0, 1)  # out of order on purpose
    ]
    path = tmp_path / "test_videodatainfo.json"
    path.write_text(json.dumps({"videos": videos, "sentences": sentences}))
    everything = msrvtt_samples(path, "all", seed=5)
    assert len(everything) == 9 and everything[0].prompt == "caption 0 of video7010"
    assert [s.seed for s in everything] == list(range(5, 14))
    one = msrvtt_samples(path, "one", seed=5)
    assert [s.id.split("_")[0] for s in one] == ["video7010", "video7011", "video7012"]
    assert one == msrvtt_samples(path, "one", seed=5)
    picks = {tuple(s.prompt for s in msrvtt_samples(path, "one", seed=seed)) for seed in range(10)}
    assert len(picks) > 1  # the seed decides which caption each video gets
