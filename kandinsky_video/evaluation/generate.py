"""Generate benchmark samples through any text-to-video callable, sharded across processes and resumable.

The model is a :data:`GenerateFn`: ``generate_fn(prompts, seeds) -> [uint8 (T, H, W, 3)]``. Processes take
contiguous shares of the *full* sample list (``split_between_processes``), so the split does not depend on which
files already exist; each then skips its finished videos. Files appear only when complete, so a killed run resumes
where it stopped. ``samples.json`` records every sample's id, prompt and seed. :func:`pipeline_generate_fn` turns
a ``KandinskyVideoPipeline`` into a ``GenerateFn``; any other model plugs in the same way.

    accelerate launch -m kandinsky_video.evaluation.cli eval ucf101 --model DIR ...   # N processes, a device each
"""

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState

from .videos import write_video

logger = logging.getLogger(__name__)

GenerateFn = Callable[[list[str], list[int]], list[np.ndarray]]
MANIFEST = "samples.json"


@dataclass(frozen=True)
class Sample:
    """One video to generate: ``id`` names its file, ``seed`` makes it reproducible."""

    id: str
    prompt: str
    seed: int


def sample_path(folder: str | os.PathLike, sample: Sample) -> Path:
    return Path(folder) / f"{sample.id}.mp4"


def write_manifest(folder: str | os.PathLike, samples: Sequence[Sample], settings: dict) -> Path:
    """``samples.json``: the sample list and the settings that produced it (refuses to mix two benchmarks)."""
    path = Path(folder) / MANIFEST
    manifest = {"settings": settings, "samples": [asdict(sample) for sample in samples]}
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != manifest:
            raise ValueError(
                f"{path} describes other samples or settings than this run; use a new --samples-dir, or delete the "
                "folder to regenerate"
            )
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1))
    return path


def read_manifest(folder: str | os.PathLike) -> list[Sample]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; it is written by sample generation (kandinsky-video eval ucf101)")
    return [Sample(**entry) for entry in json.loads(path.read_text())["samples"]]


def missing_samples(folder: str | os.PathLike, samples: Sequence[Sample]) -> list[Sample]:
    return [sample for sample in samples if not sample_path(folder, sample).is_file()]


def generate_samples(
    samples: Sequence[Sample],
    generate_fn: GenerateFn,
    folder: str | os.PathLike,
    batch_size: int = 1,
    fps: float = 8.0,
    state: PartialState | None = None,
) -> int:
    """Write this process's share of ``samples`` as ``<id>.mp4`` in ``folder``; returns how many it generated.

    ``state`` is anything with ``split_between_processes`` and ``wait_for_everyone`` (``Accelerator`` or
    ``PartialState``; the default is accelerate's process state).
    """
    state = state if state is not None else PartialState()
    generated = 0
    with state.split_between_processes(list(samples)) as share:
        todo = missing_samples(folder, share)
        logger.info("process %d: %d of its %d samples to generate", state.process_index, len(todo), len(share))
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            videos = generate_fn([s.prompt for s in batch], [s.seed for s in batch])
            if len(videos) != len(batch):
                raise ValueError(f"generate_fn returned {len(videos)} videos for {len(batch)} prompts")
            for sample, video in zip(batch, videos):
                write_video(sample_path(folder, sample), video, fps=fps)
            generated += len(batch)
            logger.info("process %d: %d/%d generated", state.process_index, generated, len(todo))
    state.wait_for_everyone()
    return generated


def pipeline_generate_fn(pipeline, **call_kwargs) -> GenerateFn:
    """A :class:`~kandinsky_video.pipelines.KandinskyVideoPipeline` as a :data:`GenerateFn`.

    One pipeline call per sample, so each video depends on its own seed only (not on its batch); frames are
    quantised to uint8 as the pipeline's writer does. ``call_kwargs`` go to every call (preset, size, steps, ...).
    """
    from ..pipelines.export import to_uint8

    def generate(prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        videos = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            generator = torch.Generator("cpu").manual_seed(seed)
            result = pipeline(prompt, generator=generator, output_type="np", **call_kwargs)
            videos.append(to_uint8(result.frames[0]))
        return videos

    return generate
