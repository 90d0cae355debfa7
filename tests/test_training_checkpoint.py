"""Checkpoints are data: the state-tree files round-trip exactly, and resuming never unpickles anything."""

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.checkpointing import load_custom_state
from accelerate.utils import DistributedType
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from safetensors.torch import save_file

from kandinsky_video.data.synthetic import write_square_videos
from kandinsky_video.training import TrainState, load_config, loop, train
from kandinsky_video.training.checkpoint import load_tree, rng_state, save_tree, set_rng_state

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_keyframes.yaml"
PICKLES = ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "optimizer.bin", "scheduler.bin",
           "random_states_0.pkl", "anything.pkl")


class Payload:
    """Unpickling this touches ``marker``; a planted pickle could run any other code instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def plant(folder: Path, markers: Path) -> None:
    for name in PICKLES:
        torch.save({"state": Payload(markers / name)}, folder / name)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return write_square_videos(tmp_path_factory.mktemp("videos"), count=2, num_frames=40)


def tiny_config(videos: Path, run: Path, steps: int):
    return load_config("keyframes", CONFIG, [
        f"data.source={videos}", f"run.output_dir={run}", f"optim.steps={steps}", "run.checkpoint_every=2",
        "run.log_every=1", "optim.ema_decay=0.9", "run.report_to=[]",
    ])


def same(a, b) -> bool:
    """Equal trees with equal types: a tuple is not a list, 1 is not 1.0 or True, tensors match in dtype too."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # nan


def test_state_tree_round_trips_exactly_and_refuses_anything_else(tmp_path):
    tree = {
        "tensors": [torch.randn(2, 3), torch.tensor(1.0), torch.arange(4), torch.ones(2, dtype=torch.bfloat16),
                    torch.tensor([True, False]), torch.get_rng_state()],
        "scalars": (1, 1.0, True, None, "text", float("inf"), float("nan"), -0.0, 2**62),
        "int_keys": {0: {"step": torch.tensor(3.0)}, 7: {}},
        "a/b~c": {"": [], "x": ()},  # keys that need escaping in tensor names
        "nested": [[(torch.zeros(1),)]],
    }
    save_tree(tree, tmp_path / "tree.safetensors")
    assert same(load_tree(tmp_path / "tree.safetensors"), tree)
    save_tree(torch.ones(3), tmp_path / "leaf.safetensors")
    assert same(load_tree(tmp_path / "leaf.safetensors"), torch.ones(3))

    for bad, where in [({"x": [np.zeros(2)]}, "/x/0"), ({"f": print}, "/f"), ({1: 2, "a": 3}, "/"),
                       ({"s": {1, 2}}, "/s"), ({"b": b"bytes"}, "/b"), ({"o": object()}, "/o")]:
        with pytest.raises(TypeError, match=f"at {where} of a training state: a checkpoint holds only tensors"):
            save_tree(bad, tmp_path / "bad.safetensors")

    save_file({"x": torch.ones(1)}, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="without a state tree"):
        load_tree(tmp_path / "plain.safetensors")
    with pytest.raises(FileNotFoundError, match="the checkpoint is incomplete"):
        load_tree(tmp_path / "missing.safetensors")


def test_training_objects_round_trip_through_state_trees(tmp_path):
    """AdamW, diffusers' warm-up schedule (a LambdaLR), EMAModel and an fp16 GradScaler: what a checkpoint holds."""
    parameters = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    optimizer = torch.optim.AdamW(parameters, lr=1e-2, betas=(0.9, 0.99))
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=10)
    ema = EMAModel(parameters, decay=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for _ in range(3):
        sum(p.square().sum() for p in parameters).backward()
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
        ema.step(parameters)
    parts = {"optimizer": optimizer, "schedule": schedule, "ema": ema, "scaler": scaler}
    save_tree({name: part.state_dict() for name, part in parts.items()}, tmp_path / "state.safetensors")
    saved = load_tree(tmp_path / "state.safetensors")

    fresh = [torch.nn.Parameter(torch.zeros_like(p)) for p in parameters]
    optimizer2 = torch.optim.AdamW(fresh, lr=1.0)
    parts2 = {"optimizer": optimizer2, "schedule": get_scheduler("cosine", optimizer2, num_warmup_steps=2,
                                                                   num_training_steps=10),
              "ema": EMAModel(fresh, decay=0.5), "scaler": torch.amp.GradScaler("cpu")}
    for name, part in parts2.items():
        part.load_state_dict(saved[name])
        assert same(part.state_dict(), parts[name].state_dict()), name


def test_rng_state_round_trips(tmp_path):
    save_tree(rng_state(torch.device("cpu")), tmp_path / "rng.safetensors")
    draws = torch.rand(3), random.random(), np.random.rand(3)
    set_rng_state(load_tree(tmp_path / "rng.safetensors"), torch.device("cpu"))
    again = torch.rand(3), random.random(), np.random.rand(3)
    assert torch.equal(draws[0], again[0]) and draws[1] == again[1] and np.array_equal(draws[2], again[2])


def test_resume_reads_data_and_never_runs_planted_pickles(videos, tmp_path, monkeypatch):
    """A copied run folder whose checkpoint holds pickles: the resume reads only its data files."""
    run, markers = tmp_path / "run", tmp_path / "markers"
    markers.mkdir()
    train(tiny_config(videos, run, steps=2))
    checkpoint = run / "checkpoints" / "checkpoint-00000002"
    assert {path.suffix for path in checkpoint.iterdir()} == {".safetensors", ".yaml"}
    plant(checkpoint, markers)
    # The payload is live: accelerate's load_state, which the old resume called, unpickles custom_checkpoint_0.pkl
    # (our TrainState) with weights_only=False, and that alone runs it. (The old resume would also have choked on
    # the planted optimizer.bin, so on the old code this test fails one way or the other.)
    with pytest.raises(Exception):
        load_custom_state(TrainState(), str(checkpoint), 0)
    assert (markers / "custom_checkpoint_0.pkl").exists()
    (markers / "custom_checkpoint_0.pkl").unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("the resume unpickled a file")

    for module, name in [(torch, "load"), (torch.serialization, "load"), (pickle, "load"), (pickle, "loads")]:
        monkeypatch.setattr(module, name, refuse)
    train(tiny_config(videos, run, steps=3))
    assert not list(markers.iterdir())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]  # resumed at 2, not restarted
    assert load_tree(run / "checkpoints" / "checkpoint-00000003" / "training_state.safetensors")["train_state"] == {
        "step": 3, "skipped": 0}


def test_old_format_checkpoint_is_refused_unopened(videos, tmp_path):
    run, markers = tmp_path / "run", tmp_path / "markers"
    markers.mkdir()
    checkpoint = run / "checkpoints" / "checkpoint-00000002"
    checkpoint.mkdir(parents=True)
    save_file({}, checkpoint / "trainable_0.safetensors")
    plant(checkpoint, markers)  # accelerate's save_state layout: optimizer.bin, random_states_0.pkl, ...
    with pytest.raises(ValueError, match=r"checkpoint-00000002 is a checkpoint in the old format: its training state "
                                         r"\(anything.pkl, custom_checkpoint_0.pkl, .*\) is pickled.*Move the folder"):
        train(tiny_config(videos, run, steps=3))
    assert not list(markers.iterdir())


@pytest.mark.parametrize("engine", [DistributedType.FSDP, DistributedType.DEEPSPEED])
def test_sharding_engines_are_refused_before_anything_loads(videos, tmp_path, monkeypatch, engine):
    class Sharded(Accelerator):  # what accelerate launch --config_file configs/accelerate/fsdp.yaml gives on GPUs
        distributed_type = property(lambda self: engine)

    monkeypatch.setattr(loop, "Accelerator", Sharded)
    monkeypatch.setattr(loop, "make_task", lambda config: pytest.fail("built the models"))
    with pytest.raises(ValueError, match=f"set up for {engine.value}.*pickles.*configs/accelerate/multi_gpu.yaml"):
        train(tiny_config(videos, tmp_path, steps=2))
