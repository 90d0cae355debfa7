"""The training loop shared by the three trainers, on accelerate (single process or DDP; FSDP / DeepSpeed refused).

A run lives in ``run.output_dir``: ``config.yaml``, ``metrics.jsonl``, ``logs/`` (trackers), ``checkpoints/``
(``checkpoint-00001000``, ...; the newest is resumed automatically), ``validation/`` (mp4 per step and prompt) and
``export/`` (the trained weights in the folders the pipeline loads).

Resuming is exact: a checkpoint restores the trainable weights, optimiser, schedule, EMA, grad scaler,
:class:`TrainState` and every process's RNG, all as data (:mod:`.checkpoint`: safetensors and JSON, never pickles,
since run folders get copied from others); the data stream restarts at the sample the interrupted run would have
read next.
"""

import dataclasses
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.logging import get_logger
from accelerate.utils import DistributedType, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader

from ..convert.common import check_state_dict
from ..data import ClipStream, TextVideoDataset, collate_clips, load_records
from ..pipelines import write_video
from .checkpoint import (
    STATE_FILE,
    TRAINABLE_FILE,
    check_not_pickled,
    load_tree,
    rng_file,
    rng_state,
    save_tree,
    set_rng_state,
)
from .config import TrainConfig, load_config, save_config
from .tasks import Task, check_model_source, make_task

logger = get_logger(__name__)


@dataclasses.dataclass
class TrainState:
    """Counters saved in every checkpoint beside the weights, optimiser, schedule, EMA and RNG."""

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
    check_precision(config.optim.mixed_precision)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.optim.gradient_accumulation,
        mixed_precision=config.optim.mixed_precision,
        log_with=config.run.report_to or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
        step_scheduler_with_optimizer=False,  # one schedule step per optimiser step, whatever the process count
    )
    check_engine(accelerator)
    resume = latest_checkpoint(run_dir)
    if resume:
        check_not_pickled(resume[1])  # before any model loads
    task = make_task(config)
    task.place(accelerator.device, frozen_dtype(accelerator), validating=config.run.validate_every > 0)
    set_seed(config.optim.seed, device_specific=True)  # after building: tiny models reseed the global RNG
    state = TrainState(step=resume[0] if resume else 0)
    samples_per_step = config.optim.batch_size * config.optim.gradient_accumulation * accelerator.num_processes
    model, optimizer, schedule, loader, ema = prepare(accelerator, config, task, records, state.step * samples_per_step)
    parts = checkpointed(accelerator, state, optimizer, schedule, ema)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir)
    if resume:
        resume_from(accelerator, resume[1], config, model, parts)
    accelerator.init_trackers(f"kandinsky-video-{config.task}", config=flat_config(config))
    logger.info("training %s: %d trainable parameters, %d processes, %d clips per step, from step %d",
                config.task, sum(p.numel() for p in trainable(model)), accelerator.num_processes, samples_per_step,
                state.step)
    run_steps(accelerator, config, task, model, optimizer, schedule, iter(loader), state, ema, parts)
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
    ema = None
    if optim.ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(trainable(model), decay=optim.ema_decay)
        ema.to(accelerator.device)
    return model, optimizer, schedule, loader, ema


def run_steps(accelerator, config, task, model, optimizer, schedule, batches, state, ema, parts) -> None:
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
            save_checkpoint(accelerator, config, model, parts, state.step)
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


def check_precision(mixed_precision: str) -> None:
    """Refuse fp16 on the CPU: accelerate takes it there but neither autocasts nor scales the loss, so the trained
    model would run in fp32 beside fp16 frozen models. Checked before the Accelerator fixes the process's precision."""
    if mixed_precision == "fp16" and PartialState().device.type == "cpu":
        raise ValueError("optim.mixed_precision=fp16 needs a CUDA GPU: on the CPU accelerate runs it without autocast "
                         "or loss scaling; use optim.mixed_precision=bf16 on the CPU (or no)")


def check_engine(accelerator: Accelerator) -> None:
    """Refuse FSDP and DeepSpeed: checkpoints here are data written from one whole copy of the state, and the
    engines' own sharded ``save_state`` writes pickles that resuming would unpickle (sharded training: a later issue).
    """
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise ValueError(
            f"accelerate is set up for {accelerator.distributed_type.value}, which Kandinsky Video does not train "
            f"with yet: its sharded checkpoints would be pickles, and resuming unpickles them (a pickle can run any "
            f"code). Launch with DDP: accelerate launch --config_file configs/accelerate/multi_gpu.yaml ..."
        )


def checkpointed(accelerator: Accelerator, state: TrainState, optimizer, schedule, ema) -> dict:
    """What a checkpoint restores beside the trainable weights, by name: objects with ``state_dict`` /
    ``load_state_dict``, the same on every process (DDP), so the main process writes them once.

    ``accelerator.step`` (micro-batches, for accumulation) is left out: checkpoints fall on optimiser steps, where it
    is 0 modulo ``gradient_accumulation``, as on a fresh start.
    """
    parts = {"train_state": state, "optimizer": optimizer, "schedule": schedule}
    if ema is not None:
        parts["ema"] = ema
    if accelerator.scaler is not None:
        parts["scaler"] = accelerator.scaler  # fp16: the loss scale and its growth counter
    return parts


def save_checkpoint(accelerator: Accelerator, config: TrainConfig, model: nn.Module, parts: dict, step: int) -> Path:
    """Trainable weights and ``parts`` (main process) and every process's RNG, as data, into a hidden folder renamed
    into place once complete; old checkpoints pruned.

    Only the trainable tensors: the frozen Kandinsky 3.0 weights (4 B parameters) come from the pretrained model on
    resume instead of being re-saved every time.
    """
    folder = Path(config.run.output_dir) / "checkpoints"
    final = folder / f"checkpoint-{step:08d}"
    partial = folder / f".partial-{final.name}"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    partial.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        weights = {name: p.detach().cpu().contiguous() for name, p in trainable_named(model, accelerator)}
        save_file(weights, str(partial / TRAINABLE_FILE))
        save_tree({name: part.state_dict() for name, part in parts.items()}, partial / STATE_FILE)
        save_config(config, partial)
    save_tree(rng_state(accelerator.device), partial / rng_file(accelerator.process_index))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
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


def resume_from(accelerator: Accelerator, folder: Path, config: TrainConfig, model: nn.Module, parts: dict) -> None:
    """Restore what :func:`save_checkpoint` wrote, on every process, reading only safetensors and YAML files."""
    state = parts["train_state"]
    step = state.step
    saved = folder / "config.yaml"
    if saved.is_file():
        before, now = flat_config(load_config(config.task, saved)), flat_config(config)
        changed = {key: (before.get(key), now[key]) for key in now if before.get(key) != now[key]}
        if changed:
            logger.warning("resuming %s with changed settings (before, now): %s", folder, changed)
    path = folder / TRAINABLE_FILE
    weights = load_file(path)
    check_state_dict(weights, dict(trainable_named(model, accelerator)), f"trainable weights {path}")
    accelerator.unwrap_model(model).load_state_dict(weights, strict=False)  # frozen keys: pretrained, kept
    saved_parts = load_tree(folder / STATE_FILE)
    for name, part in parts.items():
        if name in saved_parts:
            part.load_state_dict(saved_parts[name])
        else:
            logger.warning("%s holds no %s state (turned on since?): it starts afresh", folder, name)
    if "ema" in parts:
        parts["ema"].to(accelerator.device)  # its load_state_dict keeps the tensors where they were read (CPU)
    rng = folder / rng_file(accelerator.process_index)
    if rng.is_file():
        set_rng_state(load_tree(rng), accelerator.device)
    else:
        logger.warning("%s has no %s (saved by fewer processes): this process's random draws start from the seed, "
                       "so the resumed run is not exact", folder, rng.name, main_process_only=False)
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
