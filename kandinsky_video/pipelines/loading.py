"""Loading a pipeline for the command line, with errors that say how to get or make the weights."""

import json
import os
from pathlib import Path

import torch

from ..demo import DEMO, demo_weights
from ..models.text_encoder import TextProjection
from ..models.unet_inpaint import Kandinsky3ConditionedUNet
from .pipeline_kandinsky3_image import Kandinsky3ImagePipeline
from .pipeline_kandinsky_video import KandinskyVideoPipeline

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")  # torch.load pickles: unpickling can run code
GENERATION_DEFAULTS_NAME = "generation_defaults.json"  # optional, in a pipeline folder: the settings it was made for
IMAGE_ONLY_SETTINGS = ("image_guidance_scale",)  # keys of that file the video pipeline does not take
HOW_TO_GET_WEIGHTS = (
    "convert the published Kandinsky Video 1.0 files (hub repo ai-forever/KandinskyVideo, folder weights/) with\n"
    "  kandinsky-video convert --keyframe-ckpt kandinsky_video.pt --interpolation-ckpt "
    "kandinsky_video_interpolation.pt --movq-ckpt movq.pt --kandinsky3 kandinsky-community/kandinsky-3 --output DIR\n"
    "and pass --model DIR"
)


def resolve_model(model: str | os.PathLike) -> str | os.PathLike:
    """``demo`` -> the shipped demo model's folder; any other folder or hub id unchanged."""
    if str(model) != DEMO:
        return model
    return demo_weights()


def generation_defaults(model: str | os.PathLike) -> dict:
    """What a model folder recommends (its ``generation_defaults.json``: e.g. the demo's 64x64 and guidance), or {}.

    Keys are :class:`KandinskyVideoPipeline` call arguments, plus ``image_guidance_scale`` for the image modes;
    the commands use them wherever a flag is not given.
    """
    path = Path(resolve_model(model)) / GENERATION_DEFAULTS_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


def check_model_folder(folder: Path) -> None:
    """Raise FileNotFoundError naming what is missing from a pipeline folder."""
    index = folder / "model_index.json"
    if not index.is_file():
        hint = ""
        if (folder / "unet").is_dir():
            hint = " It looks like converted model folders without the text encoder: rerun convert with --kandinsky3."
        raise FileNotFoundError(f"{folder} is not a complete pipeline folder: it has no model_index.json.{hint}\n"
                                f"To get one, {HOW_TO_GET_WEIGHTS}")
    components = {name: spec for name, spec in json.loads(index.read_text()).items()
                  if not name.startswith("_") and isinstance(spec, list) and spec[0] is not None}
    missing = [name for name in components if not (folder / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{folder} is incomplete: the folders {missing} listed in model_index.json are missing")
    for name, (library, class_name) in components.items():
        refuse_pickle_weights(folder / name, library, class_name)


def refuse_pickle_weights(component: Path, library: str, class_name: str) -> None:
    """Raise ValueError for a component folder whose weights are pickles only: pipeline folders hold safetensors."""
    pickles = sorted(path.name for path in component.iterdir() if path.suffix in PICKLE_SUFFIXES)
    if pickles and not any(component.glob("*.safetensors")):
        raise ValueError(
            f"{component} holds pickle weights ({', '.join(pickles)}) and no safetensors; pickles can run code when "
            "loaded, so a pipeline folder must hold safetensors. Convert it once, on a machine where you trust the "
            f"file: python -c \"from {library} import {class_name}; "
            f"{class_name}.from_pretrained('{component}').save_pretrained('{component}')\", then delete {pickles[0]}"
        )


def load_pipeline(model: str | os.PathLike, dtype: torch.dtype, device: str, offload: str = "none") -> KandinskyVideoPipeline:
    """A pipeline from a local folder, hub id or ``demo``, placed on ``device`` (or offloaded to it)."""
    model = resolve_model(model)
    folder = Path(model)
    if folder.exists():
        check_model_folder(folder)
    elif str(model).startswith((".", "/", "~")) or str(model).count("/") != 1:
        raise FileNotFoundError(f"model folder {model} does not exist. To get weights, {HOW_TO_GET_WEIGHTS}")
    try:
        pipeline = KandinskyVideoPipeline.from_pretrained(model, dtype=dtype, use_safetensors=True)  # hub: no pickles
    except OSError as error:  # hub ids that cannot be fetched (offline, private, misspelt)
        raise FileNotFoundError(f"cannot load {model!r} ({error}). To get weights, {HOW_TO_GET_WEIGHTS}") from error
    if offload == "model":
        pipeline.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipeline.enable_sequential_cpu_offload(device=device)
    else:
        pipeline.to(device)
    return pipeline


def inpainting_components(model: str | os.PathLike, dtype: torch.dtype, device: str, required: bool) -> dict:
    """The inpainting U-Net and its text projection from a model folder (written by ``convert --inpainting-ckpt``)."""
    folders = [Path(resolve_model(model)) / name for name in ("inpaint_unet", "inpaint_text_projection")]
    if not all(folder.is_dir() for folder in folders):
        if not required:
            return {}
        raise FileNotFoundError(
            f"{model} has no inpainting weights; convert the Kandinsky 3.1 files (hub repo ai-forever/Kandinsky3.1, "
            "folder weights/) into it with\n  kandinsky-video convert --inpainting-ckpt kandinsky3_inpainting.pt "
            f"--inpainting-projection-ckpt projection_inpainting.pt --output {model}")
    for folder, cls in zip(folders, (Kandinsky3ConditionedUNet, TextProjection)):
        refuse_pickle_weights(folder, cls.__module__, cls.__name__)
    return {"inpaint_unet": Kandinsky3ConditionedUNet.from_pretrained(folders[0], dtype=dtype).to(device),
            "inpaint_text_projection": TextProjection.from_pretrained(folders[1], dtype=dtype).to(device)}  # fp32 kept


def load_image_pipeline(model: str | os.PathLike, dtype: torch.dtype, device: str, inpainting: bool = False):
    """The Kandinsky 3 image pipeline on a video model's components (plus the inpainting U-Net when asked)."""
    video = load_pipeline(model, dtype, device)
    extra = inpainting_components(model, dtype, device, required=inpainting)
    return Kandinsky3ImagePipeline.from_video_pipeline(video, **extra)
