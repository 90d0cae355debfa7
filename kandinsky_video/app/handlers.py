"""What the web app does, as plain functions: testable without Gradio, the same pipelines as the command line.

The model loads once, lazily, and stays loaded; one generation runs at a time (the app's queue and a lock);
every input limit is checked here, on the server, with a message the page shows as it is.
"""

import random
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..animation import AnimationSpec, Mp4Writer, render_animation
from ..animation.spec import CADENCE
from ..animation.kandinsky import kandinsky_callables
from ..pipelines.export import write_video
from ..pipelines.limits import check_setting
from ..pipelines.loading import generation_defaults, inpainting_components, load_pipeline
from ..pipelines.pipeline_kandinsky3_image import Kandinsky3ImagePipeline
from ..pipelines.pipeline_kandinsky_video import PRESETS

Progress = Callable[[float, str], None]  # (fraction done, what is running)


@dataclass(frozen=True)
class Limits:
    """Server-side bounds on a request, so one visitor cannot exhaust the machine."""

    max_prompt_chars: int = 500
    min_size: int = 64
    max_size: int = 1024
    max_steps: int = 100
    max_frames: int = 300
    max_queue: int = 16  # requests waiting for the device; more are turned away instead of piling up


class ModelHolder:
    """Loads the pipeline on first use and keeps it; a lock lets one request use the device at a time."""

    def __init__(self, model: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.model, self.device, self.dtype = model, device, dtype
        self.defaults = generation_defaults(model)  # what the model folder recommends (the demo: 64x64, ...)
        self.lock = threading.Lock()
        self._video = None
        self._image = None

    @property
    def video(self):
        if self._video is None:
            self._video = load_pipeline(self.model, self.dtype, self.device)
            self._video.set_progress_bar_config(disable=True)
        return self._video

    @property
    def image(self) -> Kandinsky3ImagePipeline:
        if self._image is None:
            extra = inpainting_components(self.model, self.dtype, self.device, required=False)
            self._image = Kandinsky3ImagePipeline.from_video_pipeline(self.video, **extra)  # shares every model
            self._image.set_progress_bar_config(disable=True)
        return self._image


class Outputs:
    """A temporary folder for generated files, removed when the app closes."""

    def __init__(self):
        self._folder = tempfile.TemporaryDirectory(prefix="kandinsky-video-app-")
        self.root = Path(self._folder.name)
        self._count = 0

    def path(self, suffix: str) -> Path:
        self._count += 1
        return self.root / f"{self._count:05d}{suffix}"

    def cleanup(self) -> None:
        self._folder.cleanup()


def check_prompt(prompt: str, limits: Limits, what: str = "prompt", required: bool = True) -> str:
    prompt = (prompt or "").strip()
    if not prompt and required:
        raise ValueError("Enter a prompt: say what the video should show.")
    if len(prompt) > limits.max_prompt_chars:
        raise ValueError(f"The {what} has {len(prompt)} characters; the limit is {limits.max_prompt_chars}.")
    return prompt


def check_number(name: str, value: float | int | str, label: str) -> float | int:
    """A page value (Gradio sends numbers, an API client may send anything) checked against the library's limits."""
    if isinstance(value, str):
        for parse in (int, float):  # int first: a 20-digit seed must not lose digits to a float
            try:
                value = parse(value)
                break
            except ValueError:
                continue  # if neither parses, check_setting names the text as it came
    return check_setting(name, value, label)


def check_size(height: int, width: int, limits: Limits) -> tuple[int, int]:
    height, width = check_number("height", height, "The height"), check_number("width", width, "The width")
    for name, value in (("height", height), ("width", width)):
        if not limits.min_size <= value <= limits.max_size or value % 64:
            raise ValueError(f"The {name} is {value}; use a multiple of 64 from {limits.min_size} to {limits.max_size}.")
    return height, width


def check_steps(steps: int, limits: Limits) -> int:
    steps = check_number("num_inference_steps", steps, "Steps")
    if not 1 <= steps <= limits.max_steps:
        raise ValueError(f"Steps must be between 1 and {limits.max_steps}, got {steps}.")
    return steps


def resolve_seed(seed: float | int | str | None) -> int:
    """An empty seed means a random one; the seed used is shown so a result can be made again."""
    if seed is None or str(seed).strip() == "":
        return random.randrange(2**31)
    return check_number("seed", seed.strip() if isinstance(seed, str) else seed, "The seed")


def text_to_video(
    holder: ModelHolder, outputs: Outputs, prompt: str, negative_prompt: str = "", height: int = 512,
    width: int = 512, preset: str = "low", keyframes: int = 15, steps: int = 50, guidance_scale: float = 5.0,
    interpolation_guidance_scale: float = 0.25, seed: float | int | str | None = None, fps: float | None = None,
    limits: Limits = Limits(), progress: Progress | None = None,
) -> tuple[str, str, int]:
    """-> (mp4 path, gif path, seed used)."""
    prompt = check_prompt(prompt, limits)
    negative_prompt = check_prompt(negative_prompt, limits, "negative prompt", required=False)
    height, width = check_size(height, width, limits)
    steps = check_steps(steps, limits)
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    keyframes = check_number("num_keyframes", keyframes, "Keyframes")
    guidance_scale = check_number("guidance_scale", guidance_scale, "The guidance scale")
    interpolation_guidance_scale = check_number("interpolation_guidance_scale", interpolation_guidance_scale,
                                                "The interpolation guidance scale")
    fps = check_number("fps", fps, "The frame rate") if fps else None  # 0 or empty: real-time motion
    seed = resolve_seed(seed)
    with holder.lock:
        pipeline = holder.video
        k = pipeline.interpolation_unet.config.frames_between if pipeline.interpolation_unet is not None else 0
        frames = int(keyframes)
        for _ in range(PRESETS[preset]):
            frames = (k + 1) * (frames - 1) + 1
        if frames > limits.max_frames:
            raise ValueError(f"{keyframes} keyframes with preset {preset!r} make {frames} frames; the limit is {limits.max_frames}.")
        stages = 1 + PRESETS[preset]
        interpolation_steps = holder.defaults.get("interpolation_steps")  # the model's own (the demo's: 1)

        def report(_, stage, step, timestep, latents):
            if progress is not None:
                if stage == "keyframes":
                    done = (step + 1) / steps
                else:
                    done = int(stage.split()[1].split("/")[0]) + (step + 1) / (interpolation_steps or steps)
                progress(done / stages, stage)

        result = pipeline(
            prompt, negative_prompt=negative_prompt or None, height=height, width=width, preset=preset,
            num_keyframes=int(keyframes), num_inference_steps=steps, guidance_scale=float(guidance_scale),
            interpolation_guidance_scale=float(interpolation_guidance_scale),
            interpolation_steps=interpolation_steps,
            generator=torch.Generator("cpu").manual_seed(seed), callback_on_step_end=report,
        )
    rate = fps or result.fps
    mp4, gif = outputs.path(".mp4"), outputs.path(".gif")
    write_video(result.frames[0], mp4, rate)
    write_video(result.frames[0], gif, rate)
    return str(mp4), str(gif), seed


def image(
    holder: ModelHolder, outputs: Outputs, prompt: str, negative_prompt: str = "", init_image: np.ndarray | None = None,
    strength: float = 0.3, mask: np.ndarray | None = None, height: int = 512, width: int = 512, steps: int = 50,
    guidance_scale: float | None = None, seed: float | int | str | None = None, limits: Limits = Limits(),
) -> tuple[str, int]:
    """Text-to-image, image-to-image (``init_image``) or inpainting (``init_image`` + ``mask``, white = repaint)."""
    prompt = check_prompt(prompt, limits)
    negative_prompt = check_prompt(negative_prompt, limits, "negative prompt", required=False)
    steps = check_steps(steps, limits)
    if init_image is None:
        height, width = check_size(height, width, limits)
    else:
        check_size(*np.asarray(init_image).shape[:2], limits)
    if mask is not None and init_image is None:
        raise ValueError("Inpainting needs an input image as well as the mask.")
    strength = check_number("strength", strength, "The denoising strength")
    if guidance_scale is not None:
        guidance_scale = check_number("image_guidance_scale", guidance_scale, "The guidance scale")
    seed = resolve_seed(seed)
    inputs = {}
    if init_image is not None:
        inputs["image"] = Image.fromarray(np.asarray(init_image, dtype=np.uint8)).convert("RGB")
    if mask is not None:
        inputs["mask_image"] = Image.fromarray(np.asarray(mask, dtype=np.uint8)).convert("L")
    with holder.lock:
        pipeline = holder.image
        if mask is not None and pipeline.inpaint_unet is None:
            raise ValueError("This model has no inpainting weights; convert kandinsky3_inpainting.pt into it first.")
        picture = pipeline(
            prompt, negative_prompt=negative_prompt or None, strength=float(strength), height=height, width=width,
            num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed), **inputs,
            guidance_scale=guidance_scale if guidance_scale is not None else holder.defaults.get("image_guidance_scale"),
        ).images[0]
    path = outputs.path(".png")
    picture.save(path)
    return str(path), seed


def animate(
    holder: ModelHolder, outputs: Outputs, prompts: str, motion: str = "zoomin", schedules: str = "",
    mode: str = "3D", denoise_strength: float = 0.13, cadence: int = 2, fps: float = 12, size: int = 512,
    steps: int = 50, seed: float | int | str | None = None, limits: Limits = Limits(),
) -> tuple[str, int]:
    """A camera-path animation. ``prompts``: one per line, optionally ``prompt | seconds`` (default 2 s);
    ``schedules``: lines ``name=schedule`` (e.g. ``zoom=0:(1.02)``); ``motion``: a preset or "none"."""
    lines = [line for line in (prompts or "").splitlines() if line.strip()]
    if not lines:
        raise ValueError("Enter at least one prompt (one per line, optionally 'prompt | seconds').")
    texts, durations = [], []
    for line in lines:
        text, _, seconds = line.partition("|")
        texts.append(check_prompt(text, limits))
        try:
            durations.append(float(seconds) if seconds.strip() else 2.0)
        except ValueError:
            raise ValueError(f"'{seconds.strip()}' in '{line.strip()}' is not a number of seconds.") from None
    height, width = check_size(size, size, limits)
    settings = {"prompts": texts, "durations": durations, "animation_mode": mode,
                "cadence": CADENCE.check("Cadence", cadence), "fps": check_number("fps", fps, "The frame rate"),
                "width": width, "height": height, "seed": resolve_seed(seed),
                "denoise_strength": f"0:({float(denoise_strength)})"}
    if motion and motion != "none":
        settings["motion_presets"] = [motion] * len(texts)
    for line in (schedules or "").splitlines():
        if line.strip():
            name, _, value = line.partition("=")
            if not value.strip():
                raise ValueError(f"Schedule line '{line.strip()}' must read name=schedule, e.g. zoom=0:(1.02).")
            settings[name.strip()] = value.strip()
    spec = AnimationSpec.from_dict(settings)
    if spec.num_frames > limits.max_frames:
        raise ValueError(f"The animation has {spec.num_frames} frames; the limit is {limits.max_frames}.")
    path = outputs.path(".mp4")
    with holder.lock:
        text_to_image, image_to_image = kandinsky_callables(holder.image, height, width, check_steps(steps, limits),
                                                            holder.defaults.get("image_guidance_scale", 3.0))
        with Mp4Writer(path, fps=spec.fps) as writer:
            render_animation(spec, text_to_image, image_to_image, writer, progress=False)
    return str(path), spec.seed
