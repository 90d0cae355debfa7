"""Training data: manifests, clip sampling, resize/crop, the seeded stream and skip-and-count of bad videos."""

import json
import logging
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kandinsky_video.data import (
    ClipKey,
    ClipSpec,
    ClipStream,
    TextVideoDataset,
    UnreadableVideo,
    VideoRecord,
    choose_frames,
    collate_clips,
    load_records,
    read_clip,
    resize_center_crop,
)
from kandinsky_video.data.synthetic import moving_square, write_mp4, write_square_videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three 40-frame 64x64 moving-square videos with .txt captions and manifest.csv."""
    return write_square_videos(tmp_path_factory.mktemp("videos"), count=3, num_frames=40).parent


def test_manifest_csv_jsonl_and_folder_agree(videos, tmp_path):
    from_csv = load_records(videos / "manifest.csv")
    from_folder = load_records(videos)
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps({"path": str(r.path), "text": r.caption, "start": 0.5, "end": 1.5})
                               for r in from_csv))
    from_jsonl = load_records(jsonl)
    assert [(r.path, r.caption) for r in from_csv] == [(r.path, r.caption) for r in from_folder]
    assert [(r.path, r.caption) for r in from_jsonl] == [(r.path, r.caption) for r in from_csv]
    assert from_csv[0].path == str(videos / "000.mp4")  # relative to the manifest's folder
    assert from_jsonl[0].start == 0.5 and from_jsonl[0].end == 1.5


def test_bad_manifests_say_what_is_wrong(videos, tmp_path):
    (tmp_path / "a.csv").write_text("file,description\nx.mp4,a cat\n")
    with pytest.raises(ValueError, match=r"caption column.*found \['description', 'file'\]"):
        load_records(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("video,caption,start,end\nx.mp4,a cat,2,1\n")
    with pytest.raises(ValueError, match="end=1.0 <= start=2.0"):
        load_records(tmp_path / "b.csv")
    with pytest.raises(FileNotFoundError, match="data.source"):
        load_records(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=".csv or .jsonl"):
        load_records(videos / "000.txt")
    (videos.parent / "uncaptioned").mkdir()
    write_mp4(moving_square("red", 4, 16, 16), videos.parent / "uncaptioned" / "a.mp4")
    with pytest.raises(FileNotFoundError, match="no same-named .txt caption"):
        load_records(videos.parent / "uncaptioned")


def test_clip_shapes_strides_and_positions(videos):
    records = load_records(videos)
    keyframes = TextVideoDataset(records, ClipSpec(4, 4, 4), 64)[ClipKey(0, (0, 0))]
    assert keyframes["video"].shape == (3, 4, 64, 64) and keyframes["video"].dtype == torch.float32
    assert -1 <= keyframes["video"].min() < keyframes["video"].max() <= 1
    assert keyframes["frame_positions"].tolist() == [0, 4, 8, 12] and keyframes["stride"] == 4
    strides = set()
    for position in range(20):  # interpolation: 9 frames (k=3, 2 groups), stride drawn from 1..3
        item = TextVideoDataset(records, ClipSpec(9, 1, 3), 32)[ClipKey(1, (0, position))]
        assert item["video"].shape == (3, 9, 32, 32)
        assert item["frame_positions"].tolist() == [item["stride"] * i for i in range(9)]
        strides.add(item["stride"])
    assert strides == {1, 2, 3}
    decoder = TextVideoDataset(records, ClipSpec(8), 64)[ClipKey(2, (0, 0))]
    assert decoder["frame_positions"].tolist() == list(range(8))


def test_start_end_seconds_limit_the_clip(videos):
    record = VideoRecord(str(videos / "000.mp4"), "x", start=0.5, end=1.0)  # 24 fps: frames 12..23
    for seed in range(10):
        _, indices = read_clip(record, ClipSpec(4, 1, 3), np.random.default_rng(seed))
        assert 12 <= indices[0] and indices[-1] < 24


def test_latest_start_keeps_the_clip_near_the_start(videos):
    record = VideoRecord(str(videos / "000.mp4"), "x", start=0.5)  # from frame 12

    def starts(spec: ClipSpec) -> set[int]:
        return {int(read_clip(record, spec, np.random.default_rng(seed))[1][0]) for seed in range(30)}

    assert starts(ClipSpec(1, latest_start=2)) == {12, 13, 14}
    assert max(starts(ClipSpec(2, 3, 3))) > 20  # without latest_start: anywhere the clip fits
    with pytest.raises(ValueError, match="latest_start"):
        ClipSpec(1, latest_start=-1)


def test_latest_start_share_caps_only_that_share_of_clips():
    rng = np.random.default_rng(0)
    spec = ClipSpec(1, latest_start=11, latest_start_share=0.5)
    starts = np.array([choose_frames(0, 48, spec, rng)[0] for _ in range(2000)])
    # half the clips start in frames 0..11, the other half anywhere in 0..47 (a quarter of them in 0..11 too)
    assert 0.59 < (starts < 12).mean() < 0.66 and starts.max() == 47
    never = ClipSpec(1, latest_start=11, latest_start_share=0.0)
    assert (np.array([choose_frames(0, 48, never, rng)[0] for _ in range(2000)]) < 12).mean() < 0.3
    with pytest.raises(ValueError, match="latest_start_share"):
        ClipSpec(1, latest_start=11, latest_start_share=1.5)


def test_resize_center_crop_keeps_the_centre():
    frames = np.zeros((2, 40, 80, 3), np.uint8)
    frames[:, :, 20:60] = 255  # the centre square of a 2:1 frame is white
    out = resize_center_crop(frames, 16, 16)
    assert out.shape == (3, 2, 16, 16)
    torch.testing.assert_close(out, torch.ones_like(out))


def test_stream_resumes_exactly_and_visits_every_record_each_epoch():
    full = list(islice(ClipStream(5, seed=3), 15))
    assert list(islice(ClipStream(5, seed=3, start=7), 8)) == full[7:]
    for epoch in range(3):
        assert sorted(key.index for key in full[5 * epoch : 5 * epoch + 5]) == list(range(5))
    assert [key.seed for key in full] == [(3, n) for n in range(15)]


def test_bad_videos_are_skipped_and_counted_across_workers(videos, tmp_path):
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video" * 100)
    truncated = (videos / "001.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(truncated[: len(truncated) // 3])
    write_mp4(moving_square("blue", 5, 64, 64), tmp_path / "short.mp4")  # too short for 4 frames at stride 4
    good = load_records(videos)
    bad = [VideoRecord(str(tmp_path / name), "x") for name in ("corrupt.mp4", "truncated.mp4", "short.mp4", "gone.mp4")]
    dataset = TextVideoDataset(good + bad, ClipSpec(4, 4, 4), 32)
    loader = DataLoader(dataset, batch_size=2, sampler=ClipStream(len(dataset), seed=0), collate_fn=collate_clips,
                        num_workers=2)
    batches = list(islice(loader, 7))  # 14 samples = 2 epochs of the 7 records
    skipped = [report for batch in batches for report in batch["skipped"]]
    assert all(batch["video"].shape == (2, 3, 4, 32, 32) for batch in batches)
    # Each epoch visits each bad record once as itself; a substitute is drawn from the other records and may be bad
    # too: at least 2 x 4 reports, all naming a bad file.
    assert len(skipped) >= 8 and all(any(r.path in report for r in bad) for report in skipped)
    assert any("too short" in report for report in skipped)


def test_only_bad_videos_stop_with_a_clear_error(tmp_path):
    (tmp_path / "corrupt.mp4").write_bytes(b"junk")
    manifest = tmp_path / "bad.csv"
    manifest.write_text("video,caption\n" + "".join(f"corrupt.mp4,x\ngone{i}.mp4,x\n" for i in range(3)))
    records = load_records(manifest)
    with pytest.raises(RuntimeError, match=r"4 videos in a row gave no clip \(.*bad.csv:2, .*\).*data.source.*raise"):
        TextVideoDataset(records, ClipSpec(2), 32, max_substitutions=3)[ClipKey(0, (0, 0))]
    # Fewer records than the limit: each is tried once, then the error names them all.
    with pytest.raises(RuntimeError, match=r"no video gives a clip \((.*bad.csv:\d, ){5}.*bad.csv:\d\)"):
        TextVideoDataset(records, ClipSpec(2), 32, max_substitutions=16)[ClipKey(0, (0, 0))]


def test_empty_captions_are_skipped_and_named_by_row(videos, tmp_path, caplog):
    csv_rows = ["video,caption", "000.mp4,a red square", "001.mp4,", "002.mp4,a blue square", "000.mp4,   ", "001.mp4"]
    (videos / "captions.csv").write_text("\n".join(csv_rows) + "\n")
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in [
        {"path": str(videos / "000.mp4"), "text": "a red square"}, {"path": str(videos / "001.mp4"), "text": None},
        {"path": str(videos / "002.mp4"), "caption": "", "text": "a blue square"}]))
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, caption in [("a", "a red square"), ("b", " \n"), ("c", "a blue square")]:
        (folder / f"{name}.mp4").write_bytes((videos / "000.mp4").read_bytes())
        (folder / f"{name}.txt").write_text(caption)
    with caplog.at_level(logging.WARNING, "kandinsky_video.data.records"):
        from_csv, from_jsonl, from_folder = [load_records(path) for path in (videos / "captions.csv", jsonl, folder)]
    assert [r.caption for r in from_csv] == ["a red square", "a blue square"]
    assert [r.where for r in from_csv] == [f"{videos / 'captions.csv'}:2", f"{videos / 'captions.csv'}:4"]
    assert from_csv[1].label() == f"{videos / 'captions.csv'}:4 ({videos / '002.mp4'})"
    assert [r.caption for r in from_jsonl] == ["a red square", "a blue square"]  # "text" stands in for a blank caption
    assert [r.where for r in from_jsonl] == [f"{jsonl}:1", f"{jsonl}:3"]
    assert [Path(r.path).name for r in from_folder] == ["a.mp4", "c.mp4"] and from_folder[0].where == ""
    assert caplog.messages == [
        f"{videos / 'captions.csv'}: skipped 3 rows with an empty caption: lines 3, 5, 6",
        f"{jsonl}: skipped 1 row with an empty caption: line 2",
        f"{folder}: skipped 1 video with an empty .txt caption: b.txt",
    ]
    (tmp_path / "empty.csv").write_text("video,caption\na.mp4,\nb.mp4, \n")
    with pytest.raises(ValueError, match=r"every row has an empty caption \(lines 2, 3\); fill in the caption"):
        load_records(tmp_path / "empty.csv")
    (tmp_path / "gap.csv").write_text("video,caption\na.mp4,a cat\n,a dog\n")  # malformed rows still stop the load
    with pytest.raises(ValueError, match="gap.csv:3 needs a video path column"):
        load_records(tmp_path / "gap.csv")


GOOD, BAD = ["g0", "g1", "g2", "g3", "g4"], ["bad-corrupt", "bad-missing", "bad-short"]


def fake_read_clip(record: VideoRecord, spec: ClipSpec, rng: np.random.Generator):
    """read_clip without decord: 'bad-*' paths give no clip; a good one gives blank frames at a random start."""
    if record.path.startswith("bad"):
        raise UnreadableVideo(f"RuntimeError: cannot open {record.path}")
    start = int(rng.integers(100))
    return np.zeros((spec.num_frames, 2, 2, 3), np.uint8), start + np.arange(spec.num_frames)


def test_skipped_clips_are_replaced_by_uniformly_drawn_rows(monkeypatch):
    """Three consecutive bad rows among five good: over 1000 epochs (8000 items), every good row comes out 1/5 of
    the time. The old next-row rule gave the row after the bad run 4/8 (4000) and the others 1/8 (1000)."""
    monkeypatch.setattr("kandinsky_video.data.dataset.read_clip", fake_read_clip)
    paths = GOOD[:2] + BAD + GOOD[2:]  # records 2-4 (rows m.csv:4-6) bad
    records = [VideoRecord(path, "x", where=f"m.csv:{row}") for row, path in enumerate(paths, start=2)]
    dataset = TextVideoDataset(records, ClipSpec(2), 2)
    items = [dataset[key] for key in islice(ClipStream(len(records), seed=0), 8000)]
    counts = Counter(item["path"] for item in items)
    expected = len(items) / len(GOOD)
    # Each good row is drawn 1000 times as itself and ~600 +- 22 (binomial sd) times as a substitute. Bounds: every
    # count within 5% (80, ~3.6 sd) of 1600 and chi-square below 18.47 (p = 0.001 at 4 degrees of freedom).
    chi_square = sum((counts[path] - expected) ** 2 / expected for path in GOOD)
    assert set(counts) == set(GOOD) and chi_square < 18.47, (counts, chi_square)
    assert max(abs(counts[path] - expected) for path in GOOD) < 0.05 * expected, counts
    reports = {report for item in items for report in item["skipped"]}
    assert reports == {f"m.csv:{row} ({path}): RuntimeError: cannot open {path}" for row, path in
                            [(4, "bad-corrupt"), (5, "bad-missing"), (6, "bad-short")]}
    # A pure function of (seed, position): the same key gives the same clip and the same reports.
    key = next(key for key in ClipStream(len(records), seed=0) if key.index == 2)
    first, again = dataset[key], dataset[key]
    assert first["path"] == again["path"] and first["skipped"] == again["skipped"]
    assert torch.equal(first["frames"], again["frames"])


def test_a_sample_never_retries_a_row_that_failed(monkeypatch):
    """One good row among six: five substitutions always reach it, as each draw excludes the rows already tried."""
    monkeypatch.setattr("kandinsky_video.data.dataset.read_clip", fake_read_clip)
    records = [VideoRecord(f"bad-{i}", "x") for i in range(5)] + [VideoRecord("g0", "x")]
    dataset = TextVideoDataset(records, ClipSpec(2), 2, max_substitutions=5)
    for position in range(300):
        item = dataset[ClipKey(position % 5, (0, position))]
        assert item["path"] == "g0" and len(set(item["skipped"])) == len(item["skipped"])
