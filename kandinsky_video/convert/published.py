"""Convert the published Kandinsky Video 1.0 files into our model folders (safetensors + config.json).

    kandinsky_video.pt                -> unet/ (KandinskyVideoUNet), text_projection/ (TextProjection)
    kandinsky_video_interpolation.pt  -> interpolation_unet/ (KandinskyVideoInterpolationUNet)
    movq.pt                           -> movq/ (diffusers VQModel)
    kandinsky3_inpainting.pt + projection_inpainting.pt (Kandinsky 3.1)
                                      -> inpaint_unet/ (Kandinsky3ConditionedUNet), inpaint_text_projection/
"""

import logging
import os
from pathlib import Path

from ..models.text_encoder import TextProjection
from ..pipelines.pipeline_kandinsky_video import KandinskyVideoPipeline
from .common import load_original_checkpoint, require_keys
from .movq import load_movq_from_original
from .unet import convert_inpainting_unet, convert_interpolation_unet, convert_keyframe_unet

logger = logging.getLogger(__name__)


def convert_published(
    output: str | os.PathLike,
    keyframe_checkpoint: str | os.PathLike | None = None,
    interpolation_checkpoint: str | os.PathLike | None = None,
    movq_checkpoint: str | os.PathLike | None = None,
    inpainting_checkpoint: str | os.PathLike | None = None,
    inpainting_projection: str | os.PathLike | None = None,
    groups: int = 32,
    attention_head_dim: int = 64,
    movq_norm_groups: int = 32,
    kandinsky3: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Convert any subset of the three published files; returns the folders written.

    ``groups`` / ``attention_head_dim`` / ``movq_norm_groups`` cannot be read off tensor shapes; the defaults are
    the published model's, other values are for tiny checkpoints in the same layout. With ``kandinsky3`` (a
    diffusers Kandinsky 3.0 folder or hub id) the output also becomes a complete pipeline folder (tokenizer and
    text encoder from there), loadable with ``KandinskyVideoPipeline.from_pretrained``. Folders already in
    ``output`` are replaced only with ``overwrite``; others are added (e.g. inpainting weights into a pipeline folder).
    """
    if not (keyframe_checkpoint or interpolation_checkpoint or movq_checkpoint or inpainting_checkpoint):
        raise ValueError("nothing to convert: pass at least one of the keyframe, interpolation, MoVQ or inpainting checkpoints")
    if bool(inpainting_checkpoint) != bool(inpainting_projection):
        raise ValueError("inpainting needs both kandinsky3_inpainting.pt and projection_inpainting.pt (hub repo "
                         "ai-forever/Kandinsky3.1, folder weights/)")
    output = Path(output)
    targets = [name for name, given in (
        ("unet", keyframe_checkpoint), ("text_projection", keyframe_checkpoint),
        ("interpolation_unet", interpolation_checkpoint), ("movq", movq_checkpoint),
        ("inpaint_unet", inpainting_checkpoint), ("inpaint_text_projection", inpainting_checkpoint),
        ("model_index.json", kandinsky3), ("tokenizer", kandinsky3), ("text_encoder", kandinsky3)) if given]
    existing = [name for name in targets if (output / name).exists()]
    if existing and not overwrite:
        raise ValueError(f"{output} already has {', '.join(existing)}; pass --overwrite to replace them, or choose "
                         "another --output")
    written = []
    if keyframe_checkpoint:
        checkpoint = load_original_checkpoint(keyframe_checkpoint)
        require_keys(checkpoint, ("unet", "projections", "null_embedding"), keyframe_checkpoint)
        unet = convert_keyframe_unet(checkpoint["unet"], groups=groups, attention_head_dim=attention_head_dim)
        projection = TextProjection.from_original(checkpoint["projections"], checkpoint["null_embedding"])
        written += [_save(unet, output / "unet"), _save(projection, output / "text_projection")]
    if interpolation_checkpoint:
        checkpoint = load_original_checkpoint(interpolation_checkpoint)
        require_keys(checkpoint, ("unet", "null_embedding"), interpolation_checkpoint)
        unet = convert_interpolation_unet(
            checkpoint["unet"], checkpoint["null_embedding"], groups=groups, attention_head_dim=attention_head_dim
        )
        written.append(_save(unet, output / "interpolation_unet"))
    if movq_checkpoint:
        written.append(_save(load_movq_from_original(movq_checkpoint, norm_num_groups=movq_norm_groups), output / "movq"))
    if inpainting_checkpoint:
        checkpoint = load_original_checkpoint(inpainting_checkpoint)
        require_keys(checkpoint, ("unet", "null_embedding"), inpainting_checkpoint)
        unet = convert_inpainting_unet(checkpoint["unet"], groups=groups, attention_head_dim=attention_head_dim)
        projection = TextProjection.from_original(load_original_checkpoint(inpainting_projection), checkpoint["null_embedding"])
        written += [_save(unet, output / "inpaint_unet"), _save(projection, output / "inpaint_text_projection")]
    if kandinsky3:
        parts = {name: output / name for name in ("unet", "interpolation_unet", "movq", "text_projection")
                 if (output / name).is_dir()}
        KandinskyVideoPipeline.from_kandinsky3(kandinsky3, **parts).save_pretrained(output)
        written.append(output)
    return written


def _save(model, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    logger.info("wrote %s (%s parameters)", folder, f"{sum(p.numel() for p in model.parameters()):,}")
    return folder
