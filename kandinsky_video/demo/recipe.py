"""The demo model's whole recipe: world data, then six training stages, then one pipeline folder.

Stages run in order through :func:`kandinsky_video.training.train` (the function behind ``kandinsky-video train``),
each with ``configs/demo/<stage>.yaml`` plus the paths the recipe fills in:

    movq                      MoVQ from scratch                     -> <out>/movq/export/movq
    text_to_image             U-Net + T5 + projection from scratch  -> <out>/text_to_image/export/pipeline
    text_to_image_continued   the same, on from it (``init_from``)  -> <out>/text_to_image_continued/export/pipeline
                                                                       (the base every later stage starts from)
    keyframes                 temporal blocks on the base           -> <out>/keyframes/export/unet_temporal
    interpolation             interpolation U-Net from the base     -> <out>/interpolation/export/interpolation_unet
    decoder                   MoVQ Video on the base's MoVQ         -> <out>/decoder/export/movq

A stage whose export holds exactly the config it would run with is skipped; an interrupted stage resumes from its
newest checkpoint (the training loop does that). The assembled pipeline is ``<out>/pipeline`` (fp32, with the
sampling settings below); :func:`ship` writes its fp16 copy to ``kandinsky_video/demo/weights/``, the demo model.
"""

import argparse
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DDIMScheduler

from ..pipelines.loading import GENERATION_DEFAULTS_NAME
from ..training import train
from ..training.config import TrainConfig, config_yaml, load_config
from . import WEIGHTS
from .world import all_scenes, write_world

logger = logging.getLogger(__name__)

STAGES = ("movq", "text_to_image", "text_to_image_continued", "keyframes", "interpolation", "decoder")
TASK_OF = {"text_to_image_continued": "text_to_image"}  # a stage runs the task of its name unless named here
BASE = "text_to_image_continued"  # the stage whose export the later stages and the assembly start from
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "demo"  # in a source checkout
# How the demo is meant to be sampled (docs/demo.md): 5 keyframes at 2 fps, one k=10 pass -> 45 frames at 22 fps.
# Guidance probed on 48 prompts, keyframes only: the right motion 73% / 90% / 94% at 2 / 4 / 6 (second run), 98% at
# 4 and 6 (third). The interpolation U-Net predicts the in-betweens from pure noise at t=999 but does not read the noise
# in a partly denoised input (docs/demo.md), so more steps hurt (24 prompts: shape 54% / 25% / 21% at 1 / 2 / 4 steps,
# third run; 50% / 21% at 1 / 2, fourth run): one DDIM step, which is all it is trained for (min_timestep 990). Its
# guidance probed on the 162 training prompts (fifth run): FVD 372 / 408 at 0 / 0.25, shape 47% / 48%: none.
GENERATION = {"height": 64, "width": 64, "preset": "medium", "num_keyframes": 5, "num_inference_steps": 50,
              "interpolation_steps": 1, "guidance_scale": 6.0, "interpolation_guidance_scale": 0.0,
              "image_guidance_scale": 5.0}


def interpolation_scheduler() -> DDIMScheduler:
    """DDIM on the training schedule (v-prediction), its first step at t=999 ("trailing" spacing): see GENERATION."""
    return DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                         timestep_spacing="trailing", clip_sample=False)


@dataclass
class RecipeResult:
    trained: list[str] = field(default_factory=list)  # stages that ran (or resumed) this time
    skipped: list[str] = field(default_factory=list)  # stages already finished with the same config
    pipeline: Path | None = None  # the assembled pipeline folder, once every stage is done


def world_manifest(out: Path, repeats: int = 2, frames: int = 49) -> Path:
    """``<out>/world/manifest.jsonl``: the training split of the demo world, rendered once (reused if complete)."""
    manifest = out / "world" / "manifest.jsonl"
    if manifest.is_file():  # write_world writes the manifest last: present means complete
        return manifest
    scenes = all_scenes(held_out=False)
    logger.info("writing the demo world: %d scenes x %d repeats, %d frames each", len(scenes), repeats, frames)
    return write_world(out / "world", scenes, repeats=repeats, frames=frames)


def export_of(out: Path, stage: str) -> Path:
    """Where a finished stage's trained model is (what later stages and the assembly read)."""
    inner = {"movq": "movq", "text_to_image": "pipeline", "keyframes": "unet_temporal",
             "interpolation": "interpolation_unet", "decoder": "movq"}[TASK_OF.get(stage, stage)]
    return out / stage / "export" / inner


def stage_config(stage: str, out: Path, data: Path, configs: Path = CONFIGS, max_steps_scale: float = 1.0,
                 overrides: list[str] = ()) -> TrainConfig:
    """``configs/<stage>.yaml`` with this recipe's paths, steps scaled (at least 1), then ``overrides``."""
    paths = [f"data.source={data}", f"run.output_dir={out / stage}"]
    task = TASK_OF.get(stage, stage)
    if task == "text_to_image":
        paths.append(f"text_to_image.movq={export_of(out, 'movq')}")
        if stage == "text_to_image_continued":
            paths.append(f"text_to_image.init_from={export_of(out, 'text_to_image')}")
    elif task != "movq":
        paths.append(f"model={export_of(out, BASE)}")
    path = configs / f"{stage}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}; pass --configs with a folder holding {', '.join(STAGES)} .yaml files")
    unscaled = load_config(task, path, [*paths, *overrides])
    if unscaled.data.cache_dir:  # one latent cache per run folder, shared by the stages (an override still wins)
        paths.append(f"data.cache_dir={out / 'cache'}")
    steps = unscaled.optim.steps
    scaled = [f"optim.steps={max(1, round(steps * max_steps_scale))}"] if max_steps_scale != 1 else []
    return load_config(task, path, [*paths, *scaled, *overrides])


def finished(config: TrainConfig) -> bool:
    """True if the stage's export was written by a run with exactly this config (the loop saves it there)."""
    saved = Path(config.run.output_dir) / "export" / "config.yaml"
    return saved.is_file() and saved.read_text() == config_yaml(config)


def run_recipe(out: str | os.PathLike, until: str = STAGES[-1], max_steps_scale: float = 1.0,
               configs: str | os.PathLike = CONFIGS, data: str | os.PathLike | None = None,
               overrides: dict[str, list[str]] | None = None) -> RecipeResult:
    """Run the stages up to ``until`` (skipping finished ones), then assemble ``<out>/pipeline`` if all are done.

    ``data``: a manifest to train on instead of the demo world written under ``out``; ``overrides``: per stage,
    extra ``section.key=value`` settings (applied after the recipe's own).
    """
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; choose one of {', '.join(STAGES)}")
    if not max_steps_scale > 0:
        raise ValueError(f"max_steps_scale={max_steps_scale} must be > 0 (e.g. 0.01 for a quick check)")
    unknown = set(overrides or {}) - set(STAGES)
    if unknown:
        raise ValueError(f"overrides for unknown stages {sorted(unknown)}; stages are {', '.join(STAGES)}")
    out, configs = Path(out), Path(configs)
    data = Path(data) if data is not None else world_manifest(out)
    result = RecipeResult()
    for stage in STAGES[: STAGES.index(until) + 1]:
        config = stage_config(stage, out, data, configs, max_steps_scale, (overrides or {}).get(stage, []))
        if finished(config):
            logger.info("stage %s: finished, skipped (%s)", stage, export_of(out, stage))
            result.skipped.append(stage)
            continue
        logger.info("stage %s: training %d steps into %s", stage, config.optim.steps, config.run.output_dir)
        train(config)
        result.trained.append(stage)
    if until == STAGES[-1]:
        result.pipeline = assemble_pipeline(out)
    return result


def assemble_pipeline(out: str | os.PathLike) -> Path:
    """``<out>/pipeline``: the base (and its scheduler) with the trained temporal blocks, interpolation U-Net and
    MoVQ Video."""
    from ..models import KandinskyVideoInterpolationUNet
    from ..pipelines import KandinskyVideoPipeline
    from ..pipelines.pipeline_kandinsky_video import load_movq

    out = Path(out)
    for stage in STAGES:
        if not export_of(out, stage).exists():
            raise FileNotFoundError(f"{export_of(out, stage)} is missing; run the recipe through stage {stage}")
    pipeline = KandinskyVideoPipeline.from_pretrained(export_of(out, BASE))
    pipeline.unet.load_temporal(export_of(out, "keyframes"))
    pipeline.register_modules(
        interpolation_unet=KandinskyVideoInterpolationUNet.from_pretrained(export_of(out, "interpolation")),
        interpolation_scheduler=interpolation_scheduler(),
        movq=load_movq(export_of(out, "decoder")),
    )
    return save_pipeline(pipeline, out / "pipeline")


def save_pipeline(pipeline, folder: Path) -> Path:
    """``save_pretrained`` plus the demo's generation defaults, into a hidden folder renamed into place when done."""
    partial = folder.with_name(f".partial-{folder.name}")
    shutil.rmtree(partial, ignore_errors=True)
    pipeline.save_pretrained(partial)
    (partial / GENERATION_DEFAULTS_NAME).write_text(json.dumps(GENERATION, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    return folder


def ship(out: str | os.PathLike, target: str | os.PathLike = WEIGHTS) -> Path:
    """The assembled ``<out>/pipeline`` in fp16 (half the bytes; loaded back in the caller's dtype) at ``target``."""
    from ..pipelines import KandinskyVideoPipeline

    source = Path(out) / "pipeline"
    if not (source / "model_index.json").is_file():
        raise FileNotFoundError(f"{source} is not an assembled pipeline; run the whole recipe first")
    return save_pipeline(KandinskyVideoPipeline.from_pretrained(source, dtype=torch.float16), Path(target))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the demo model: world data, six stages, one pipeline.")
    parser.add_argument("--out", default="runs/demo", help="run folder (world/, one folder per stage, pipeline/)")
    parser.add_argument("--until", default=STAGES[-1], choices=STAGES, help="last stage to run")
    parser.add_argument("--max-steps-scale", type=float, default=1.0,
                        help="fraction of each stage's optim.steps (e.g. 0.01 for a quick check of the recipe)")
    parser.add_argument("--configs", default=str(CONFIGS), help="folder of <stage>.yaml files")
    parser.add_argument("--data", help="a manifest to train on instead of the demo world")
    parser.add_argument("--ship", action="store_true", help=f"then write the pipeline in fp16 to {WEIGHTS}, the demo model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = run_recipe(args.out, args.until, args.max_steps_scale, args.configs, args.data)
    print(f"trained: {', '.join(result.trained) or 'nothing'}; already finished: {', '.join(result.skipped) or 'none'}")
    if result.pipeline is not None:
        print(f"demo pipeline: {result.pipeline}")
        if args.ship:
            print(f"shipped as the demo model: {ship(args.out)}")
    else:
        print(f"stopped after {args.until}: {export_of(Path(args.out), args.until)}")
