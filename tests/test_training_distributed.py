"""Two processes under `accelerate launch` (DDP, gloo on the CPU), with a corrupt video in the manifest, then a
resume on two processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from kandinsky_video.data.synthetic import write_square_videos

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_run_counts_a_corrupt_video_and_resumes(tmp_path):
    manifest = write_square_videos(tmp_path / "videos", count=3, num_frames=24)
    (tmp_path / "videos" / "corrupt.mp4").write_bytes(b"this is not a video" * 50)
    with open(manifest, "a") as file:
        file.write("corrupt.mp4,a broken video\n")
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(ROOT / "train" / "keyframes.py"),
        "--config", str(ROOT / "configs" / "tiny_keyframes.yaml"), f"data.source={manifest}",
        f"run.output_dir={run}", "optim.steps=3", "optim.gradient_accumulation=2", "data.num_workers=2",
        "run.log_every=1", "run.checkpoint_every=3", "run.report_to=[]",
    ]
    # ACCELERATE_USE_CPU makes the two launched processes one gloo group on a machine without GPUs.
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes, 4 clips per step" in result.stderr
    # 3 steps x 2 micro-batches x 2 processes = 12 clips from a stream of 4 records: the corrupt one comes up 3 times,
    # each time replaced by a good record drawn from the sample's seed and counted (as manifest.csv:5), whichever
    # worker of whichever process read it.
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and metrics[-1]["skipped_clips"] == 3
    assert "skipped 3 clips whose videos were unreadable" in result.stderr
    assert result.stderr.count(f"skipped a clip: {manifest}:5 ({tmp_path / 'videos' / 'corrupt.mp4'}): ") == 3
    # Data only: weights and the replicated state written once (main process), the random streams per process.
    checkpoint = run / "checkpoints" / "checkpoint-00000003"
    assert {p.name for p in checkpoint.iterdir()} == {
        "config.yaml", "trainable_0.safetensors", "training_state.safetensors", "rng_state_0.safetensors",
        "rng_state_1.safetensors"}
    assert load_file(run / "export" / "unet_temporal" / "temporal.safetensors")

    # Resumed on 2 processes: each reads the shared state and its own random streams, and goes on from step 3.
    command[command.index("--main_process_port") + 1] = str(free_port())
    command[command.index("optim.steps=3")] = "optim.steps=4"
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {checkpoint} (step 3)" in result.stderr and "not exact" not in result.stderr
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
