"""The text-video dataset, its seeded sampler and its collate function.

Bad videos never stop a run: :class:`TextVideoDataset` replaces a video it cannot cut a clip from by another record
drawn uniformly (not the next one, which would be drawn once more for every bad record before it) and reports the
failure inside the sample (``skipped``); :func:`collate_clips` gathers those reports into the batch, so the training
loop counts them whatever data-loader worker (or process) read the video.

Randomness is a pure function of (seed, position in the sample stream): :class:`ClipStream` yields the record
index and a per-sample seed, so a run resumed at stream position n reads exactly the clips an uninterrupted run
reads from n on, with any number of data-loader workers.
"""

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .clips import ClipSpec, UnreadableVideo, read_clip, resize_center_crop
from .records import VideoRecord


class ClipKey(NamedTuple):
    """What the sampler hands the dataset: a record index and the seed of everything random about its clip."""

    index: int
    seed: tuple[int, int]  # (run seed, stream position)


class ClipStream(Sampler[ClipKey]):
    """An endless seeded stream: epoch e visits the records in permutation(seed, e); item n gets seed (seed, n).

    ``start`` skips the first items without reading them (resume: items consumed = steps * accumulation *
    processes * batch size).
    """

    def __init__(self, num_records: int, seed: int, start: int = 0):
        if num_records < 1:
            raise ValueError("the dataset is empty")
        self.num_records, self.seed, self.start = num_records, seed, start

    def __iter__(self) -> Iterator[ClipKey]:
        position = self.start
        while True:
            epoch, offset = divmod(position, self.num_records)
            for index in np.random.default_rng([self.seed, epoch]).permutation(self.num_records)[offset:]:
                yield ClipKey(int(index), (self.seed, position))
                position += 1


class TextVideoDataset(Dataset):
    """Clips (3, T, H, W) in [-1, 1] with captions; item = :class:`ClipKey` (from :class:`ClipStream`).

    A record that cannot give a clip (unreadable, missing, too short) is replaced by one drawn uniformly from the
    records not yet tried for this sample, with the sample's own rng (the stream stays a pure function of seed and
    position), up to ``max_substitutions`` in a row; each replaced record is reported in the sample's ``skipped``
    list by its row and path.
    """

    def __init__(self, records: Sequence[VideoRecord], spec: ClipSpec, resolution: int, max_substitutions: int = 16):
        if not records:
            raise ValueError("no training videos; check data.source")
        self.records, self.spec, self.resolution = list(records), spec, resolution
        self.max_substitutions = max_substitutions

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: ClipKey) -> dict:
        rng = np.random.default_rng(key.seed)
        index, failed, skipped = key.index, [], []
        for _ in range(self.max_substitutions + 1):
            record = self.records[index]
            try:
                frames, indices = read_clip(record, self.spec, rng)
            except UnreadableVideo as error:
                failed.append(index)
                skipped.append(f"{record.label()}: {error}")
                if len(failed) == len(self.records):
                    break
                index = _draw_other(len(self.records), failed, rng)
                continue
            return {
                "video": resize_center_crop(frames, self.resolution, self.resolution),  # (3, T, H, W)
                "caption": record.caption,
                "frame_positions": torch.from_numpy(indices - indices[0]),  # (T,) source-frame offsets
                "path": record.path,  # with "frames", what a latent cache keys the clip by
                "frames": torch.from_numpy(indices),  # (T,) source-frame indices
                "stride": int(indices[1] - indices[0]) if len(indices) > 1 else 1,
                "skipped": skipped,
            }
        rows = ", ".join(self.records[i].where or self.records[i].path for i in failed)
        if len(failed) == len(self.records):
            raise RuntimeError(f"no video gives a clip ({rows}), last: {skipped[-1]}; check data.source")
        raise RuntimeError(
            f"{len(skipped)} videos in a row gave no clip ({rows}), last: {skipped[-1]}; check data.source "
            "(or raise data.max_substitutions)"
        )


def _draw_other(count: int, failed: list[int], rng: np.random.Generator) -> int:
    """An index in range(count) drawn uniformly from those not in ``failed`` (distinct, fewer than ``count``)."""
    index = int(rng.integers(count - len(failed)))
    for taken in sorted(failed):  # shift past each failed index at or below it: the index-th free one
        if index >= taken:
            index += 1
    return index


def collate_clips(items: list[dict]) -> dict:
    """Stack samples: video (B, 3, T, H, W), frame_positions and frames (B, T), stride (B,); captions, paths and skip
    reports as lists."""
    return {
        "video": torch.stack([item["video"] for item in items]),
        "frame_positions": torch.stack([item["frame_positions"] for item in items]),
        "stride": torch.tensor([item["stride"] for item in items]),
        "frames": torch.stack([item["frames"] for item in items]),
        "caption": [item["caption"] for item in items],
        "path": [item["path"] for item in items],
        "skipped": [report for item in items for report in item["skipped"]],
    }
