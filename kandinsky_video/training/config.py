"""Training configuration: dataclasses loaded from YAML, ``section.key=value`` overrides, checked before any work.

Every value is type-checked (an int where an int belongs, one of the listed choices, ...), unknown keys are rejected
naming the closest valid key, and the resolved config is written beside every checkpoint and export. Model
architecture is not configured here: it lives in the model folders' ``config.json``; only layers created new
(a fresh interpolation U-Net's ``frames_between``, a fresh MoVQ Video's temporal layers) take settings from here.
"""

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..models.unet_interpolation import IMAGE_CONV_INPUTS

TASKS = ("keyframes", "interpolation", "decoder", "movq", "text_to_image")
FROM_SCRATCH = ("movq", "text_to_image")  # tasks whose ``model`` names an architecture size (tasks.MODEL_SIZES)
SIZES = ("tiny", "demo")  # the size names of tasks.MODEL_SIZES
CACHED = ("keyframes", "interpolation", "text_to_image")  # tasks that can cache frozen-model outputs (data.cache_dir)
LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION = ("no", "bf16", "fp16")
TRACKERS = ("tensorboard", "wandb")


@dataclass
class DataConfig:
    source: str = ""  # .csv/.jsonl manifest (video, caption[, start, end]) or a folder of videos + same-named .txt
    resolution: int = 512  # square training size: centre crop, then resize
    num_workers: int = 4  # data-loader worker processes (0: read in the training process)
    max_substitutions: int = 16  # unreadable/short videos replaced in a row before the run stops
    # keyframes/interpolation/text_to_image: cache the frozen MoVQ latents (and frozen text context) per sampled clip
    # here ("": off)
    cache_dir: str = ""

    def __post_init__(self):
        _positive(self, "data", "resolution")
        _non_negative(self, "data", "num_workers", "max_substitutions")
        if self.resolution % 8:
            raise ValueError(f"data.resolution={self.resolution} must be a multiple of 8 (64 for the U-Nets)")


@dataclass
class OptimConfig:
    steps: int = 100_000  # optimiser steps
    batch_size: int = 1  # clips per process per micro-batch
    gradient_accumulation: int = 2
    lr: float = 1e-4
    lr_schedule: str = "constant"  # after warm-up: constant (the paper's recipe) | cosine (to 0 at `steps`)
    warmup_steps: int = 0
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    max_grad_norm: float = 1.0  # 0 disables clipping
    mixed_precision: str = "no"  # no | bf16 | fp16
    gradient_checkpointing: bool = False
    ema_decay: float = 0.0  # 0: no EMA; else exported and validated weights are the EMA (diffusers EMAModel)
    seed: int = 0

    def __post_init__(self):
        _positive(self, "optim", "steps", "batch_size", "gradient_accumulation", "lr")
        _non_negative(self, "optim", "warmup_steps", "weight_decay", "max_grad_norm")
        _choice(self, "optim", "mixed_precision", MIXED_PRECISION)
        _choice(self, "optim", "lr_schedule", LR_SCHEDULES)
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"optim.betas={self.betas} must be two numbers in [0, 1), e.g. [0.9, 0.999]")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"optim.ema_decay={self.ema_decay} must be in [0, 1) (0 turns EMA off; 0.9999 is usual)")


@dataclass
class RunConfig:
    output_dir: str = "runs/train"  # checkpoints/, logs/, validation/, export/ and config.yaml go here
    checkpoint_every: int = 1000  # steps; the newest checkpoint is resumed from automatically
    keep_checkpoints: int = 3
    log_every: int = 10
    validate_every: int = 0  # steps between validation videos (0: none)
    validation_prompts: list[str] = field(default_factory=lambda: ["a red panda eating bamboo in the snow"])
    validation_inference_steps: int = 50
    validation_keyframes: int = 8
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # tensorboard and/or wandb; [] for none
    export_pipeline: bool = False  # also write a complete pipeline folder with the trained model in it

    def __post_init__(self):
        _positive(self, "run", "checkpoint_every", "keep_checkpoints", "log_every", "validation_inference_steps",
                  "validation_keyframes")
        _non_negative(self, "run", "validate_every")
        if not self.output_dir:
            raise ValueError("run.output_dir is empty; say where the run should write (e.g. runs/keyframes)")
        if self.validate_every and not [prompt for prompt in self.validation_prompts if prompt.strip()]:
            raise ValueError("run.validation_prompts is empty; give prompts or set run.validate_every=0")
        for tracker in self.report_to:
            if tracker not in TRACKERS:
                raise ValueError(f"run.report_to has {tracker!r}; choose from {TRACKERS} (or [] for none)")


@dataclass
class KeyframesConfig:
    num_frames: int = 16
    frame_stride: int = 12  # source frames between keyframes: 2 fps of ~24 fps video, as released
    uncond_prob: float = 0.1  # captions replaced by the null-embedding context (for classifier-free guidance)
    # The temporal layers' architecture (models/unet_keyframe.py); "" keeps the model's (released: blocks, 1d, 1d).
    # Any other value than the model's builds fresh (identity) temporal layers of that kind on its frozen spatial U-Net.
    temporal_placement: str = ""  # blocks | layers
    temporal_conv: str = ""  # 1d | 3d
    temporal_attention: str = ""  # 1d | 3d

    def __post_init__(self):
        _positive(self, "keyframes", "num_frames", "frame_stride")
        _probability(self, "keyframes", "uncond_prob")
        _choice(self, "keyframes", "temporal_placement", ("", "blocks", "layers"))
        _choice(self, "keyframes", "temporal_conv", ("", "1d", "3d"))
        _choice(self, "keyframes", "temporal_attention", ("", "1d", "3d"))


@dataclass
class InterpolationConfig:
    frames_between: int = 3  # k; for a new interpolation U-Net, checked against an existing one
    num_groups: int = 8  # keyframe pairs per clip: clips have (k+1)*num_groups+1 frames (33 for k=3)
    max_skip: int = 12  # skip s (source frames between neighbouring clip frames) drawn from 1..max_skip
    max_perturbation: int = 250  # keyframe latents are noised to a level drawn from 0..max_perturbation
    uncond_prob: float = 0.1  # zeroed keyframes (the unconditional branch of interpolation guidance)
    min_timestep: int = 0  # t drawn from min_timestep..999: e.g. 900 for a sampler that starts at 999 in one step
    image_conv_on: str = "first_noisy"  # a new U-Net's image input conv: first_noisy | left_keyframe

    def __post_init__(self):
        _positive(self, "interpolation", "frames_between", "num_groups", "max_skip")
        _non_negative(self, "interpolation", "max_perturbation", "min_timestep")
        _probability(self, "interpolation", "uncond_prob")
        _choice(self, "interpolation", "image_conv_on", IMAGE_CONV_INPUTS)
        for name, value in (("max_perturbation", self.max_perturbation), ("min_timestep", self.min_timestep)):
            if value >= 1000:
                raise ValueError(f"interpolation.{name}={value} must be below 1000, the number of training timesteps")


@dataclass
class DecoderConfig:
    num_frames: int = 8
    train_decoder: bool = False  # False: temporal layers only; True: the whole decoder (encoder always frozen)
    loss: str = "l2"  # l1 | l2 reconstruction loss
    temporal_kernel_size: list[int] = field(default_factory=lambda: [3, 3, 3])  # a new MoVQ Video's temporal convs
    temporal_attention: bool = True  # a new MoVQ Video's temporal attention
    lpips_weights: str = ""  # LPIPS state dict (VGG/AlexNet backbone + lin0..4; training/lpips.py); "": no LPIPS
    lpips_weight: float = 1.0  # loss = reconstruction + this times LPIPS (when lpips_weights is set)
    latent_noise: float = 0.0  # std of Gaussian noise on the latents before decoding (as movq.latent_noise)

    def __post_init__(self):
        _positive(self, "decoder", "num_frames")
        _non_negative(self, "decoder", "lpips_weight", "latent_noise")
        _choice(self, "decoder", "loss", ("l1", "l2"))
        kernel = self.temporal_kernel_size
        if len(kernel) != 3 or not all(size > 0 and size % 2 for size in kernel):
            raise ValueError(f"decoder.temporal_kernel_size={kernel} must be 3 odd sizes (time, height, width), "
                             "e.g. [3, 3, 3] or [3, 1, 1]")


@dataclass
class MovqConfig:
    l2_weight: float = 0.0  # L1 reconstruction + this times L2
    latent_weight: float = 1e-3  # times mean(latents**2): keeps the unquantised latents near unit scale for diffusion
    # Std of Gaussian noise added to the latents before decoding: a diffusion model's small latent errors then
    # decode like the clean latents (demo: without it, noise of std 0.05 turned 97% right shapes into 64%).
    latent_noise: float = 0.0

    def __post_init__(self):
        _non_negative(self, "movq", "l2_weight", "latent_weight", "latent_noise")


@dataclass
class TextToImageConfig:
    movq: str = ""  # folder of the trained MoVQ (the movq task's export/movq), frozen here
    uncond_prob: float = 0.1  # captions replaced by the null-embedding context (which then learns)
    # Train on frames among each video's first N only (0: any frame). Then a caption's motion words matter in a
    # single image ("moving right" starts on the left), so the frozen base passes them on to the temporal blocks.
    first_frames: int = 0
    # The share of samples cut from those first frames; the rest come from anywhere, so the base still sees how
    # videos end (with first_frames alone the demo's last keyframe, never seen by the base, came out broken).
    first_frames_share: float = 1.0
    # Another text_to_image run's export/pipeline: its base (spatial U-Net, T5 encoder, text projection) trains on
    # from there under this run's own optimiser and schedule; "": from scratch at the ``model`` size.
    init_from: str = ""
    # The range the MoVQ's latents lie in, written into the exported pipeline's scheduler (its x0 thresholding):
    # 1.0 for Kandinsky 3.0's MoVQ; a MoVQ with wider latents needs more, or its images come out washed out.
    sample_range: float = 1.0

    def __post_init__(self):
        _probability(self, "text_to_image", "uncond_prob")
        _positive(self, "text_to_image", "sample_range")
        _probability(self, "text_to_image", "first_frames_share")
        _non_negative(self, "text_to_image", "first_frames")
        if not self.movq:
            raise ValueError("text_to_image.movq is empty; give the movq stage's export, e.g. runs/movq/export/movq")


@dataclass
class TrainConfig:
    """A whole run; of the task sections only the one named by ``task`` is set."""

    task: str  # keyframes | interpolation | decoder | movq | text_to_image
    # "tiny" (testing models), a KandinskyVideoPipeline folder, or a Kandinsky 3.0 folder/hub id; for the
    # from-scratch tasks (movq, text_to_image) a size: tiny | demo
    model: str = "tiny"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    keyframes: KeyframesConfig | None = None
    interpolation: InterpolationConfig | None = None
    decoder: DecoderConfig | None = None
    movq: MovqConfig | None = None
    text_to_image: TextToImageConfig | None = None

    def __post_init__(self):
        _choice(self, "", "task", TASKS)
        if self.task in FROM_SCRATCH and self.model not in SIZES:
            raise ValueError(f"model={self.model!r}: `train {self.task}` starts from scratch; name a size from "
                             f"{SIZES} (the architectures are in kandinsky_video.training.tasks.MODEL_SIZES)")
        if self.task == "movq" and self.run.validate_every:
            raise ValueError("run.validate_every: `train movq` writes no validation videos; set run.validate_every=0")
        if not self.model:
            raise ValueError("model is empty; use 'tiny', a pipeline folder or a Kandinsky 3.0 folder / hub id")
        if self.data.cache_dir and self.task not in CACHED:
            raise ValueError(f"data.cache_dir: only {CACHED} read their latents through the cache, not "
                             f"`train {self.task}`; remove data.cache_dir")
        if self.task not in ("decoder", "movq") and self.data.resolution % 64:
            raise ValueError(f"data.resolution={self.data.resolution}: the U-Nets need a multiple of 64 (256, 512)")


SECTIONS = {
    "data": DataConfig, "optim": OptimConfig, "run": RunConfig,
    "keyframes": KeyframesConfig, "interpolation": InterpolationConfig, "decoder": DecoderConfig,
    "movq": MovqConfig, "text_to_image": TextToImageConfig,
}


def load_config(task: str, path: str | os.PathLike | None = None, overrides: list[str] = ()) -> TrainConfig:
    """YAML file (optional) + ``section.key=value`` overrides -> a checked :class:`TrainConfig` for ``task``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    raw = {}
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file {path} does not exist; see configs/ for examples")
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path} must hold a mapping of sections (data:, optim:, run:, {task}:)")
    if raw.get("task", task) != task:
        raise ValueError(f"{path} is a config for task {raw['task']!r}; run `kandinsky-video train {raw['task']}`")
    raw["task"] = task
    for override in overrides:
        key, separator, text = override.partition("=")
        if not separator:
            raise ValueError(f"override {override!r} must look like section.key=value, e.g. optim.lr=2e-4")
        _set(raw, key.strip(), text.strip(), task)
    return _build(raw, task)


def config_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML (only the task's own section); it loads back with :func:`load_config`."""
    data = {key: value for key, value in dataclasses.asdict(config).items() if value is not None}
    return yaml.safe_dump(data, sort_keys=False)


def save_config(config: TrainConfig, folder: str | os.PathLike) -> Path:
    """Write the resolved config as ``config.yaml`` in ``folder``."""
    path = Path(folder) / "config.yaml"
    path.write_text(config_yaml(config))
    return path


# ---- parsing and checking ---------------------------------------------------------------------------------------


def _valid_keys(task: str) -> dict[str, type]:
    """Every settable dotted key of a task's config with its type."""
    keys = {"model": str}
    for section in ("data", "optim", "run", task):
        hints = typing.get_type_hints(SECTIONS[section])
        keys.update({f"{section}.{f.name}": hints[f.name] for f in dataclasses.fields(SECTIONS[section])})
    return keys


def _unknown(key: str, task: str) -> ValueError:
    valid = _valid_keys(task)
    section = key.split(".")[0]
    if section in SECTIONS and section not in ("data", "optim", "run", task):
        return ValueError(f"section {section!r} is for `train {section}`; this config trains {task}")
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {sorted(valid)}"
    return ValueError(f"unknown config key {key!r}; {hint}")


def _set(raw: dict, key: str, text: str, task: str) -> None:
    """Apply one override, parsing ``text`` for the key's type (strings are taken literally)."""
    kind = _valid_keys(task).get(key)
    if kind is None:
        raise _unknown(key, task)
    value = text if kind is str else yaml.safe_load(text)
    if "." not in key:
        raw[key] = value
        return
    section, name = key.split(".", 1)
    if not isinstance(raw.setdefault(section, {}), dict):
        raise ValueError(f"{section} must be a mapping of keys, got {raw[section]!r}")
    raw[section][name] = value


def _build(raw: dict, task: str) -> TrainConfig:
    valid = _valid_keys(task)
    sections = {}
    for key, value in raw.items():
        if key in ("task", "model"):  # task: checked in load_config
            continue
        if key not in SECTIONS or key not in ("data", "optim", "run", task):
            raise _unknown(key, task)
        value = {} if value is None else value  # a section whose keys are all commented out
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a mapping of keys (e.g. {key}:\\n  key: value), got {value!r}")
        for name in value:
            if f"{key}.{name}" not in valid:
                raise _unknown(f"{key}.{name}", task)
        checked = {name: _coerce(item, valid[f"{key}.{name}"], f"{key}.{name}") for name, item in value.items()}
        sections[key] = SECTIONS[key](**checked)
    if task not in sections:  # (not setdefault: a default that cannot be empty, e.g. text_to_image.movq, raises)
        sections[task] = SECTIONS[task]()
    return TrainConfig(task=task, model=_coerce(raw.get("model", "tiny"), str, "model"), **sections)


def _coerce(value, kind, key: str):
    """``value`` as ``kind`` (str, int, float, bool or list[...]), or a ValueError naming the key and the type."""
    if typing.get_origin(kind) is list:
        if not isinstance(value, list):
            raise ValueError(f"{key} must be a list, e.g. {key}=[a, b]; got {value!r}")
        (item,) = typing.get_args(kind)
        return [_coerce(element, item, f"{key}[{index}]") for index, element in enumerate(value)]
    if kind is float and isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ValueError(f"{key} must be {'an' if kind is int else 'a'} {kind.__name__}, got {value!r}")


def _positive(config, section: str, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"{section}.{name}={getattr(config, name)!r} must be > 0")


def _non_negative(config, section: str, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 0:
            raise ValueError(f"{section}.{name}={getattr(config, name)!r} must be >= 0")


def _probability(config, section: str, name: str) -> None:
    if not 0 <= getattr(config, name) <= 1:
        raise ValueError(f"{section}.{name}={getattr(config, name)!r} must be a probability in [0, 1]")


def _choice(config, section: str, name: str, choices: tuple[str, ...]) -> None:
    if getattr(config, name) not in choices:
        prefix = f"{section}." if section else ""
        raise ValueError(f"{prefix}{name}={getattr(config, name)!r}; choose one of {choices}")
