"""Where a demo training step's time goes: the data loader alone, then the model step alone on one kept batch.

    python benchmarks/demo_train_step.py --world runs/demo/world/manifest.jsonl [--steps 10] [--stages ...]

Trains throw-away 2-step ``movq`` and ``text_to_image`` stages (the later stages start from that export; the weights do
not change the cost), then for each stage of the demo recipe, at the batch size and loader workers given:

- loader: seconds per batch of the training ``DataLoader`` (decode, crop, resize, collate) alone;
- step: seconds per optimiser step (frozen encoders, loss, backward, AdamW) on one batch kept in memory, with the
  frozen MoVQ encoder fed 8 frames per call and with the training default (a pixel budget) on a GPU; on the CPU,
  which always encodes 8 at a time, the default only;
- step with the latents from ``data.cache_dir`` (the demo configs set it; filled by the first step), where the stage
  caches them: what a step costs once every sampled clip has been seen.

On a GPU the step is bound by kernel launches (docs/benchmarks.md): a bigger batch costs little more.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from kandinsky_video.data import load_records
from kandinsky_video.demo.recipe import stage_config
from kandinsky_video.training import tasks, train
from kandinsky_video.training.loop import prepare

DEFAULT_STAGES = ["interpolation:32:5", "text_to_image:128:10", "keyframes:32:3"]


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(stage: str, batch_size: int, workers: int, out: Path, world: Path, steps: int) -> dict[str, float]:
    config = stage_config(stage, out, world, overrides=[f"optim.batch_size={batch_size}",
                                                        f"data.num_workers={workers}"])
    accelerator = Accelerator()
    task = tasks.make_task(config)
    task.place(accelerator.device, torch.float32, validating=False)
    model, optimizer, _, loader, _ = prepare(accelerator, config, task, load_records(world), 0)
    batches = iter(loader)
    for _ in range(3):  # workers started, first batches queued
        next(batches)
    tick = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
    figures = {"loader": (time.perf_counter() - tick) / steps}

    def step() -> None:
        accelerator.backward(task.loss(model, batch))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def timed() -> float:
        for _ in range(2):
            step()
        synchronize()
        tick = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize()
        return (time.perf_counter() - tick) / steps

    height, width = batch["video"].shape[-2:]
    default = tasks.ENCODE_PIXELS_GPU
    chunkings = [("step, default chunks", default)]
    if accelerator.device.type != "cpu":  # the CPU always encodes ENCODE_FRAMES (8) at a time: nothing to compare
        chunkings.insert(0, ("step, 8 frames per encoder call", 8 * height * width))
    cache, task.cache = task.cache, None  # first the frozen encoder on every step
    for name, pixels in chunkings:
        tasks.ENCODE_PIXELS_GPU = pixels
        figures[name] = timed()
    tasks.ENCODE_PIXELS_GPU = default
    if cache is not None:
        task.cache = cache
        figures["step, latents from the cache"] = timed()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", required=True, help="the demo world's manifest (train/demo_recipe.py writes it)")
    parser.add_argument("--steps", type=int, default=10, help="timed batches and steps per stage")
    parser.add_argument("--stages", nargs="+", default=DEFAULT_STAGES, help="stage:batch_size:workers")
    args = parser.parse_args()
    world = Path(args.world)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        quick = ["optim.steps=2", "optim.batch_size=2", "data.num_workers=0"]
        train(stage_config("movq", out, world, overrides=quick))
        train(stage_config("text_to_image", out, world, overrides=quick))
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
        print(f"{device}, torch {torch.__version__}")
        for spec in args.stages:
            stage, batch_size, workers = spec.split(":")
            figures = measure(stage, int(batch_size), int(workers), out, world, args.steps)
            print(f"{stage}, batch {batch_size}, {workers} workers: "
                  + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in figures.items()), flush=True)


if __name__ == "__main__":
    main()
