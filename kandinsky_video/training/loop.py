"""The training loop shared by the three trainers, on accelerate (single process, DDP, FSDP, DeepSpeed alike).

A run lives in ``run.output_dir``: ``config.yaml``, ``metrics.jsonl``, ``logs/`` (trackers), ``checkpoints/``
(``checkpoint-00001000``, ...; the newest is resumed automatically), ``validation/`` (mp4 per step and prompt) and
``export/`` (the trained weights in the folders the pipeline loads).

Resuming is exact: accelerate restores optimiser, RNG and (through :class:`TrainState` and the save/load hooks) the
step and the trainable weights; the data stream restarts at the sample the interrupted run would have read next.
"""

import dataclasses
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader

from ..convert.common import check_state_dict
from ..data import ClipStream, TextVideoDataset, collate_clips, load_records
from ..pipelines import write_video
from .config import TrainConfig, load_config, save_config
from .tasks import Task, check_model_source, make_task

logger = get_logger(__name__)


@dataclasses.dataclass
class TrainState:
    """Counters saved in every checkpoint beside what accelerate saves itself."""

    step: int = 0  # optimiser steps done
    skipped: int = 0  # clips replaced because their video was unreadable or too short, summed over processes

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.step, self.skipped = int(state["step"]), int(state["skipped"])


def train(config: TrainConfig) -> Path:
    """Train (resuming from the newest checkpoint in ``run.output_dir``), export, and return the export folder."""
    records = load_records(config.data.source)  # bad paths fail here, before any model loads
    check_model_source(config.model, config.task)
    check_trackers(config.run.report_to)
    run_dir = Path(config.run.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.optim.gradient_accumulation,
        mixed_precision=config.optim.mixed_precision,
        log_with=config.run.report_to or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
        step_scheduler_with_optimizer=False,  # one schedule step per optimiser step, whatever the process count
    )
    task = make_task(config)
    task.place(accelerator.device, frozen_dtype(accelerator), validating=config.run.validate_every > 0)
    set_seed(config.optim.seed, device_specific=True)  # after building: tiny models reseed the global RNG
    resume = latest_checkpoint(run_dir)
    state = TrainState(step=resume[0] if resume else 0)
    samples_per_step = config.optim.batch_size * config.optim.gradient_accumulation * accelerator.num_processes
    model, optimizer, schedule, loader, ema = prepare(accelerator, config, task, records, state.step * samples_per_step)
    accelerator.register_for_checkpointing(state, *([ema] if ema else []))
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir)
    if resume:
        resume_from(accelerator, resume[1], state, config)
    accelerator.init_trackers(f"kandinsky-video-{config.task}", config=flat_config(config))
    logger.info("training %s: %d trainable parameters, %d processes, %d clips per step, from step %d",
                config.task, sum(p.numel() for p in trainable(model)), accelerator.num_processes, samples_per_step,
                state.step)
    run_steps(accelerator, config, task, model, optimizer, schedule, iter(loader), state, ema)
    export = export_weights(accelerator, config, task, model, ema)
    (logger.warning if state.skipped else logger.info)(
        "skipped %d clips whose videos were unreadable or too short (see the warnings above)", state.skipped
    )
    accelerator.end_training()
    return export


def prepare(accelerator: Accelerator, config: TrainConfig, task: Task, records, start: int):
    """Optimiser (trainable parameters only), learning-rate schedule with warm-up, data stream from ``start``, EMA."""
    optim = config.optim
    if optim.gradient_checkpointing:
        task.model.enable_gradient_checkpointing()
    task.model.train()
    parameters = trainable(task.model)
    optimizer = torch.optim.AdamW(parameters, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    name = {"constant": "constant_with_warmup", "cosine": "cosine"}[optim.lr_schedule]  # diffusers' names
    schedule = get_scheduler(name, optimizer, num_warmup_steps=optim.warmup_steps, num_training_steps=optim.steps)
    dataset = TextVideoDataset(records, task.clip_spec(), config.data.resolution, config.data.max_substitutions)
    loader = DataLoader(
        dataset,
        batch_size=optim.batch_size,
        sampler=ClipStream(len(dataset), optim.seed, start),
        collate_fn=collate_clips,
        num_workers=config.data.num_workers,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(optim.seed),  # keeps the global RNG untouched (exact resume)
    )
    model, optimizer, schedule, loader = accelerator.prepare(task.model, optimizer, schedule, loader)
    register_checkpoint_hooks(accelerator)
    ema = None
    if optim.ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(trainable(model), decay=optim.ema_decay)
        ema.to(accelerator.device)
    return model, optimizer, schedule, loader, ema


def run_steps(accelerator, config, task, model, optimizer, schedule, batches, state, ema) -> None:
    """Optimiser steps until ``optim.steps``: accumulate, clip, step; log, checkpoint and validate on schedule."""
    optim, run = config.optim, config.run
    parameters = trainable(model)
    loss_sum = torch.zeros((), device=accelerator.device)  # summed on the device: no sync until logging
    pending_skips, window_steps, window_seconds = 0, 0, 0.0
    while state.step < optim.steps:
        tick = time.perf_counter()
        for _ in range(optim.gradient_accumulation):
            batch = next(batches)
            pending_skips += report_skipped(batch["skipped"])
            with accelerator.accumulate(model):
                loss = task.loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and optim.max_grad_norm:
                    accelerator.clip_grad_norm_(parameters, optim.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
        schedule.step()
        state.step += 1
        if ema is not None:
            ema.step(parameters)
        window_steps, window_seconds = window_steps + 1, window_seconds + time.perf_counter() - tick
        last = state.step == optim.steps
        if state.step % run.log_every == 0 or last or state.step % run.checkpoint_every == 0:
            # Skip counts of all processes, summed before logging or saving them (every process takes part).
            state.skipped += int(accelerator.reduce(torch.tensor(pending_skips, device=accelerator.device)).item())
            pending_skips = 0
        if state.step % run.log_every == 0 or last:
            clips = optim.batch_size * optim.gradient_accumulation * accelerator.num_processes
            log_metrics(accelerator, config, state, {
                "loss": accelerator.reduce(loss_sum / (window_steps * optim.gradient_accumulation), "mean").item(),
                "lr": schedule.get_last_lr()[0],
                "step_seconds": window_seconds / window_steps,  # training only: saving and validation excluded
                "clips_per_second": clips * window_steps / window_seconds,
                "skipped_clips": state.skipped,
            })
            loss_sum.zero_()
            window_steps, window_seconds = 0, 0.0
        if state.step % run.checkpoint_every == 0 or last:
            save_checkpoint(accelerator, config, state.step)
        if run.validate_every and state.step % run.validate_every == 0:
            validate(accelerator, config, task, model, ema, state.step)


def report_skipped(reports: list[str]) -> int:
    """Warn about each replaced clip (on whatever process read it) and return how many there were."""
    for report in reports:
        logger.warning("skipped a clip: %s", report, main_process_only=False)
    return len(reports)


def log_metrics(accelerator: Accelerator, config: TrainConfig, state: TrainState, metrics: dict) -> None:
    accelerator.log(metrics, step=state.step)
    if accelerator.is_main_process:
        with open(Path(config.run.output_dir) / "metrics.jsonl", "a") as file:
            file.write(json.dumps({"step": state.step, **metrics}) + "\n")
        logger.info("step %d: %s", state.step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))


# ---- checkpoints ----------------------------------------------------------------------------------------------


def register_checkpoint_hooks(accelerator: Accelerator) -> None:
    """Checkpoints hold only the trainable tensors: the frozen Kandinsky 3.0 weights (4 B parameters) come from the
    pretrained model on resume instead of being re-saved every time. Under FSDP / DeepSpeed accelerate hands the
    hooks no weights (the engines save their own shards), so there they do nothing."""

    def save(models: list, weights: list, output_dir: str) -> None:
        for index in range(len(weights)):
            tensors = {name: p.detach().cpu().contiguous() for name, p in trainable_named(models[index], accelerator)}
            if accelerator.is_main_process:
                save_file(tensors, os.path.join(output_dir, f"trainable_{index}.safetensors"))
        weights.clear()

    def load(models: list, input_dir: str) -> None:
        for index, model in enumerate(models):
            path = os.path.join(input_dir, f"trainable_{index}.safetensors")
            tensors = load_file(path)
            check_state_dict(tensors, dict(trainable_named(model, accelerator)), f"trainable weights {path}")
            accelerator.unwrap_model(model).load_state_dict(tensors, strict=False)  # frozen keys: pretrained, kept
        models.clear()

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def save_checkpoint(accelerator: Accelerator, config: TrainConfig, step: int) -> Path:
    """``accelerator.save_state`` into a hidden folder, renamed into place once complete; old ones pruned."""
    folder = Path(config.run.output_dir) / "checkpoints"
    final = folder / f"checkpoint-{step:08d}"
    partial = folder / f".partial-{final.name}"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_config(config, partial)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        for old in sorted(folder.glob("checkpoint-*"))[: -config.run.keep_checkpoints]:
            shutil.rmtree(old)
        logger.info("saved %s", final)
    accelerator.wait_for_everyone()
    return final


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """(step, folder) of the newest complete checkpoint (half-written ones are hidden ``.partial-*`` folders)."""
    found = [
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in (run_dir / "checkpoints").glob("checkpoint-*")
        if path.is_dir() and path.name.removeprefix("checkpoint-").isdigit()
    ]
    return max(found) if found else None


def resume_from(accelerator: Accelerator, folder: Path, state: TrainState, config: TrainConfig) -> None:
    step = state.step
    saved = folder / "config.yaml"
    if saved.is_file():
        before, now = flat_config(load_config(config.task, saved)), flat_config(config)
        changed = {key: (before.get(key), now[key]) for key in now if before.get(key) != now[key]}
        if changed:
            logger.warning("resuming %s with changed settings (before, now): %s", folder, changed)
    accelerator.load_state(str(folder))
    if state.step != step:
        raise ValueError(f"{folder} holds step {state.step}, not {step}: the folder was renamed; restore its name")
    logger.info("resumed from %s (step %d)", folder, step)


# ---- validation and export ------------------------------------------------------------------------------------


def whole_model(accelerator: Accelerator, model: nn.Module) -> nn.Module | None:
    """The trained model with all its weights on the main process (None elsewhere); every process must call this.

    ``get_state_dict`` gathers FSDP / ZeRO-3 shards; without sharding the copy shares the live tensors (no memory).
    """
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return None
    module = accelerator.unwrap_model(model)
    with torch.device("meta"):
        whole = type(module).from_config(module.config)
    whole.load_state_dict(state, assign=True)
    return whole.to(accelerator.device).eval()


@contextmanager
def ema_weights(ema, model: nn.Module):
    """The EMA weights in the model inside the block (if EMA is on), the live ones back after it."""
    if ema is None:
        yield
        return
    parameters = trainable(model)
    ema.store(parameters)
    ema.copy_to(parameters)
    try:
        yield
    finally:
        ema.restore(parameters)


@torch.no_grad()
def validate(accelerator: Accelerator, config: TrainConfig, task: Task, model: nn.Module, ema, step: int) -> None:
    """Generate one mp4 per validation prompt with the pipeline holding the current (EMA) weights."""
    folder = Path(config.run.output_dir) / "validation" / f"step-{step:08d}"
    with ema_weights(ema, model):
        whole = whole_model(accelerator, model)  # shares the live (EMA) tensors unless they were sharded
        if accelerator.is_main_process:
            task.use(whole)
            try:
                for index, prompt in enumerate(config.run.validation_prompts):
                    video = task.pipeline(
                        prompt, height=config.data.resolution, width=config.data.resolution, preset=task.preset,
                        num_keyframes=config.run.validation_keyframes,
                        num_inference_steps=config.run.validation_inference_steps,
                        generator=torch.Generator().manual_seed(index),
                    )
                    write_video(video.frames[0], folder / f"{index:02d}.mp4", video.fps)
            finally:
                task.use(task.model)
            logger.info("validation videos in %s", folder)
    accelerator.wait_for_everyone()


def export_weights(accelerator: Accelerator, config: TrainConfig, task: Task, model: nn.Module, ema) -> Path:
    """``export/``: the trained weights where the pipeline loads them (+ a whole pipeline folder if asked)."""
    folder = Path(config.run.output_dir) / "export"
    partial = folder.with_name(".partial-export")
    with ema_weights(ema, model):
        whole = whole_model(accelerator, model)
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            task.export(whole, partial)
            if config.run.export_pipeline:
                task.use(whole)
                task.pipeline.save_pretrained(partial / "pipeline")
                task.use(task.model)
            save_config(config, partial)
    if accelerator.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
        logger.info("exported the trained weights to %s", folder)
    accelerator.wait_for_everyone()
    return folder


# ---- small helpers --------------------------------------------------------------------------------------------


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [parameter for parameter in model.parameters() if parameter.requires_grad]


def trainable_named(model: nn.Module, accelerator: Accelerator) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters under the names of the unwrapped model (no DDP ``module.`` prefix)."""
    return [(name, p) for name, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad]


def frozen_dtype(accelerator: Accelerator) -> torch.dtype:
    """Frozen models run in the mixed-precision dtype; trained weights stay fp32 (autocast computes in bf16/fp16)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision, torch.float32)


def check_trackers(report_to: list[str]) -> None:
    """Fail before any work if a requested tracker is not installed."""
    for tracker, module in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
        if tracker in report_to:
            try:
                __import__(module)
            except ImportError:
                raise ValueError(f"run.report_to has {tracker} but it is not installed: pip install {module} "
                                 f"(or remove it: run.report_to=[])") from None


def flat_config(config: TrainConfig) -> dict:
    """``section/key`` -> scalar (lists as text), the form trackers' hyper-parameter tables take."""
    flat = {}
    for key, value in dataclasses.asdict(config).items():
        items = value.items() if isinstance(value, dict) else [(None, value)] if value is not None else []
        for name, item in items:
            flat[f"{key}/{name}" if name else key] = str(item) if isinstance(item, list) else item
    return flat
