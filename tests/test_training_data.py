"""Training data: manifests, clip sampling, resize/crop, the seeded stream and skip-and-count of bad videos."""

import json
from itertools import islice

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kandinsky_video.data import (
    ClipKey,
    ClipSpec,
    ClipStream,
    TextVideoDataset,
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
    # Each epoch visits each bad record once as itself; runs of bad records are replaced by the next good one, so
    # some are also visited as substitutes: at least 2 x 4 reports, all naming a bad file.
    assert len(skipped) >= 8 and all(any(r.path in report for r in bad) for report in skipped)
    assert any("too short" in report for report in skipped)


def test_only_bad_videos_stop_with_a_clear_error(tmp_path):
    (tmp_path / "corrupt.mp4").write_bytes(b"junk")
    dataset = TextVideoDataset([VideoRecord(str(tmp_path / "corrupt.mp4"), "x")], ClipSpec(2), 32, max_substitutions=3)
    with pytest.raises(RuntimeError, match="4 videos in a row gave no clip.*data.source"):
        dataset[ClipKey(0, (0, 0))]
