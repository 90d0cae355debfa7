"""How good the demo model is: its videos read back by the world's analyser, and FVD against rendered clips.

Every figure comes with the analyser's own accuracy on rendered world videos of the same prompts, so a low score can
be told apart from a misreading analyser. The T2I-only baseline (the frozen base's image for each prompt, held still)
shows what the temporal blocks add.
"""

from collections.abc import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from ..evaluation.fvd import fvd_from_features, get_protocol, i3d_features
from ..pipelines.export import to_uint8
from .analysis import path_smoothness, read_video
from .world import SHAPES, Scene, all_scenes, render

FVD_FRAMES = 16  # clip length of the FVD protocol (StyleGAN-V's fvd2048_16f)


def prompt_scenes(count: int, held_out: bool, seed: int = 0) -> list[Scene]:
    """``count`` scenes of one split, every scene once in a seeded order before any repeats."""
    scenes = all_scenes(held_out=held_out)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(scenes)) for _ in range(-(-count // len(scenes)))])
    return [scenes[i] for i in order[:count]]


def score(scenes: list[Scene], videos: np.ndarray | list[np.ndarray]) -> dict[str, float]:
    """Colour / shape / motion accuracy, shape accuracy per prompted shape (``shape: square`` ...; NaN for a shape
    no prompt names) and mean centroid-path roughness (pixels / frame^2) of videos vs prompts."""
    readings = [read_video(np.asarray(video)) for video in videos]
    matches = [reading.matches(scene) for reading, scene in zip(readings, scenes, strict=True)]
    figures = {name: float(np.mean([m[name] for m in matches])) for name in ("colour", "shape", "motion")}
    for shape in SHAPES:
        hits = [m["shape"] for m, scene in zip(matches, scenes) if scene.shape == shape]
        figures[f"shape: {shape}"] = float(np.mean(hits)) if hits else float("nan")
    roughness = [path_smoothness(reading.track) for reading in readings]
    figures["roughness"] = float(np.nanmean(roughness)) if not np.all(np.isnan(roughness)) else float("nan")
    return figures


def rendered_videos(scenes: list[Scene], frames: int, size: int, seed: int = 10_000) -> np.ndarray:
    """(N, frames, size, size, 3) world videos of the scenes, at seeds unlike the training set's."""
    return np.stack([render(scene, frames, size, seed=seed + i) for i, scene in enumerate(scenes)])


@torch.no_grad()
def autoencoded_videos(pipeline, videos: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Videos through the pipeline's own MoVQ encoder and (video) decoder: the best its latents can show."""
    from ..training.tasks import encode_video

    out = []
    for _, chunk in batches(list(videos), batch_size):
        video = torch.from_numpy(np.stack(chunk)).permute(0, 4, 1, 2, 3) * 2 - 1  # (B, 3, T, H, W)
        decoded = pipeline.decode(encode_video(pipeline.movq, video), chunk_size=8)
        out.append(((decoded.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).cpu().numpy())
    return np.concatenate(out)


def batches(items: list, size: int) -> Iterator[tuple[int, list]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def generate_videos(pipeline, scenes: list[Scene], settings: dict, batch_size: int = 16, seed: int = 0) -> np.ndarray:
    """(N, T, H, W, 3) videos in [0, 1], one per scene caption; batch ``b`` is seeded ``seed + b``."""
    videos = []
    for start, chunk in tqdm(list(batches(scenes, batch_size)), desc="demo videos"):
        generator = torch.Generator("cpu").manual_seed(seed + start)
        videos.append(pipeline([s.caption for s in chunk], generator=generator, **settings).frames)
    return np.concatenate(videos)


def generate_still_videos(image_pipeline, scenes: list[Scene], settings: dict, num_frames: int,
                          batch_size: int = 16, seed: int = 0) -> np.ndarray:
    """The T2I base alone: its image for each caption, repeated ``num_frames`` times -> (N, T, H, W, 3)."""
    videos = []
    for start, chunk in tqdm(list(batches(scenes, batch_size)), desc="T2I-only videos"):
        generator = torch.Generator("cpu").manual_seed(seed + start)
        images = image_pipeline([s.caption for s in chunk], height=settings["height"], width=settings["width"],
                                num_inference_steps=settings["num_inference_steps"], output_type="np",
                                guidance_scale=settings["image_guidance_scale"], generator=generator).images
        videos.append(np.repeat(np.asarray(images)[:, None], num_frames, axis=1))
    return np.concatenate(videos)


def fvd_clips(videos: np.ndarray) -> np.ndarray:
    """uint8 (N, 16, H, W, 3): every second frame from the start (16 frames span 31 of a 41-frame demo video)."""
    clips = videos[:, : 2 * FVD_FRAMES : 2]
    if clips.shape[1] < FVD_FRAMES:
        raise ValueError(f"videos of {videos.shape[1]} frames are too short for {FVD_FRAMES}-frame FVD clips (every 2nd)")
    return to_uint8(clips)


def fvd(i3d: torch.nn.Module, real: np.ndarray, fake: np.ndarray, protocol: str = "styleganv") -> float:
    """FVD between two sets of videos (N, T, H, W, 3) in [0, 1], on :func:`fvd_clips` of each."""
    chosen = get_protocol(protocol)
    features = [i3d_features(i3d, list(fvd_clips(videos)), chosen) for videos in (real, fake)]
    return fvd_from_features(*features, chosen)
