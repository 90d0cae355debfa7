"""Training data loader throughput against decord's raw decode of the same clips, on the CPU.

    python benchmarks/data.py [--videos 8] [--frames 200] [--size 320x240] [--clips 64] [--workers 0 2]

Writes moving-square test videos (H.264, 24 fps) to a temporary folder, draws the keyframe trainer's clips (16
frames, 12 source frames apart, random start; ``--task`` picks another trainer's clip shape) and times

- raw: ``decord.VideoReader(path).get_batch(indices).asnumpy()`` for each clip (open + seek + decode), one thread;
- loader: the training ``DataLoader`` (``TextVideoDataset`` + ``ClipStream`` + ``collate_clips``) over the same clips,
  which also centre-crops, resizes to ``--resolution`` and maps to [-1, 1] floats, with each ``--workers`` count.
"""

import argparse
import os
import platform
import tempfile
import time
from itertools import islice

import decord
import numpy as np
import torch
from torch.utils.data import DataLoader

from kandinsky_video.data import ClipSpec, ClipStream, TextVideoDataset, choose_frames, collate_clips, load_records
from kandinsky_video.data.synthetic import write_square_videos

SPECS = {"keyframes": ClipSpec(16, 12, 12), "interpolation": ClipSpec(33, 1, 12), "decoder": ClipSpec(8)}


def raw_decode(records, keys, spec: ClipSpec) -> float:
    """Clips per second of decord alone, on the clips the loader reads for ``keys`` (same seeds, same frames)."""
    lengths = {r.path: len(decord.VideoReader(r.path, num_threads=1)) for r in records}
    clips = []
    for key in keys:
        record = records[key.index]
        clips.append((record.path, choose_frames(0, lengths[record.path], spec, np.random.default_rng(key.seed))))
    start = time.perf_counter()
    for path, indices in clips:
        decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1).get_batch(indices.tolist()).asnumpy()
    return len(clips) / (time.perf_counter() - start)


def loader_rate(records, spec: ClipSpec, resolution: int, clips: int, workers: int) -> float:
    dataset = TextVideoDataset(records, spec, resolution)
    loader = DataLoader(dataset, batch_size=1, sampler=ClipStream(len(records), seed=0), collate_fn=collate_clips,
                        num_workers=workers, persistent_workers=False)
    batches = iter(loader)
    next(batches)  # worker start-up is paid once per run, not per clip
    start = time.perf_counter()
    for batch in islice(batches, clips):
        assert not batch["skipped"], batch["skipped"]
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=200, help="frames per test video (24 fps)")
    parser.add_argument("--size", default="320x240", help="test video WxH")
    parser.add_argument("--resolution", type=int, default=256, help="training size after crop + resize")
    parser.add_argument("--task", default="keyframes", choices=sorted(SPECS))
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    width, height = (int(value) for value in args.size.split("x"))
    torch.set_num_threads(1)
    spec = SPECS[args.task]
    with tempfile.TemporaryDirectory() as folder:
        records = load_records(write_square_videos(folder, args.videos, args.frames, height, width))
        keys = list(islice(ClipStream(len(records), seed=0), 1, args.clips + 1))  # what the loader reads after warm-up
        raw = raw_decode(records, keys, spec)
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
              f"decord {decord.__version__}; {args.videos} videos of {args.frames} frames {width}x{height}; "
              f"{args.task} clips of {spec.num_frames} frames -> {args.resolution}x{args.resolution}; "
              f"{args.clips} clips")
        print(f"| reader | clips/s | vs raw decord |\n|---|---|---|\n| raw decord decode | {raw:.1f} | 1.00 |")
        for workers in args.workers:
            rate = loader_rate(records, spec, args.resolution, args.clips, workers)
            print(f"| training loader, {workers} workers | {rate:.1f} | {rate / raw:.2f} |")


if __name__ == "__main__":
    main()
