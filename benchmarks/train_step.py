"""One keyframe-trainer step at full size on a GPU: step time, peak memory, model FLOPs and their share of peak.

    python benchmarks/train_step.py [--frames 16] [--size 512] [--steps 5] [--no-checkpointing] [--peak-tflops X]

The paper's setting: the full-size KandinskyVideoUNet (Kandinsky 3.0 config, random weights, spatial part frozen,
1.1 B temporal parameters trained), batch 1, 16 frames at 512x512, bf16 autocast over fp32 weights (what the
keyframe trainer does under ``optim.mixed_precision=bf16``), gradient checkpointing, AdamW. The timed step is the
trainer's: frozen MoVQ encoder (bf16) -> noise -> U-Net forward/backward -> optimiser step. The text context is
random (1, 128, 4096): the T5 encoder's forward is not in the step.

Model FLOPs count the U-Net forward and backward once (the checkpointing recompute is excluded) plus the MoVQ
encoder; ``torch.utils.flop_counter`` counts matmuls and convolutions. ``--tiny`` runs the same code on the tiny
test models (CPU or GPU) to check the script.
"""

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import VQModel
from torch.utils.flop_counter import FlopCounterMode

from kandinsky_video.models import KandinskyVideoUNet
from kandinsky_video.models.movq_video import KANDINSKY3_MOVQ_CONFIG
from kandinsky_video.training.tasks import NUM_TRAIN_TIMESTEPS, encode_video, noise_schedule

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched against the device name.
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "H800": 989.4, "A100": 312.0, "L40S": 362.1}


def build(tiny: bool, device: torch.device):
    """(U-Net with frozen spatial part, frozen MoVQ, context width)."""
    if tiny:
        from kandinsky_video.testing import tiny_pipeline

        pipeline = tiny_pipeline()
        return pipeline.unet.to(device), pipeline.movq.to(device), pipeline.unet.config.cross_attention_dim
    with device:  # build on the GPU directly: 4.1 B parameters
        unet = KandinskyVideoUNet()
        movq = VQModel(**KANDINSKY3_MOVQ_CONFIG).to(torch.bfloat16)
    return unet, movq, unet.config.cross_attention_dim


def peak_tflops(override: float | None, device: torch.device) -> float | None:
    if override or device.type != "cuda":
        return override
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=512, help="frame height and width (multiple of 64)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--no-checkpointing", action="store_true", help="keep all activations (needs more memory)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the built-in table")
    parser.add_argument("--tiny", action="store_true", help="tiny test models, any device: checks the script")
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("benchmarks/train_step.py times the full-size keyframe trainer and needs an NVIDIA GPU with about "
                 "40 GB free; none was found. Run it on a GPU machine, or add --tiny to check the script on the CPU.")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = 64 if args.tiny else args.size
    unet, movq, context_dim = build(args.tiny, device)
    unet.freeze_spatial().train()
    movq.requires_grad_(False).eval()
    if not args.no_checkpointing:
        unet.enable_gradient_checkpointing()
    accelerator = Accelerator(mixed_precision="bf16" if device.type == "cuda" else "no")
    optimizer = torch.optim.AdamW(unet.temporal_parameters(), lr=1e-4)
    model, optimizer = accelerator.prepare(unet, optimizer)
    noise_sched = noise_schedule("epsilon")
    video = torch.rand(1, 3, args.frames, size, size, device=device) * 2 - 1
    context = torch.randn(1, 128, context_dim, device=device)
    mask = torch.ones(1, 128, dtype=torch.long, device=device)
    positions = torch.arange(args.frames, device=device) * 12

    def step() -> None:  # as KeyframeTask.loss + the loop's update, with a random text context
        latents = encode_video(movq, video)
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (1,), device=device)
        prediction = model(noise_sched.add_noise(latents, noise, timesteps), timesteps, context, mask, positions).sample
        accelerator.backward(F.mse_loss(prediction.float(), noise))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    synchronize()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    peak_memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")

    executed = count_flops(step)  # U-Net forward, recompute and backward, optimiser, MoVQ encoder
    with torch.no_grad(), accelerator.autocast():
        latents = encode_video(movq, video)
        unet_forward = count_flops(lambda: model(latents, torch.zeros(1, device=device), context, mask, positions))
    model_flops = executed - (0 if args.no_checkpointing else unet_forward)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"keyframe trainer step on {name}: batch 1 x {args.frames} frames x {size}x{size}, "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}, gradient checkpointing "
          f"{'off' if args.no_checkpointing else 'on'}, {sum(p.numel() for p in unet.temporal_parameters()):,} "
          f"trainable parameters")
    print(f"step time {seconds * 1000:.0f} ms, peak memory {peak_memory:.1f} GiB, "
          f"model FLOPs {model_flops:.3e} per step "
          f"({executed:.3e} executed, with recompute), {model_flops / seconds / 1e12:.2f} TFLOP/s")
    peak = peak_tflops(args.peak_tflops, device)
    if peak:
        share = model_flops / seconds / (peak * 1e12)
        print(f"model FLOPs utilisation {100 * share:.1f}% of {peak:g} TFLOP/s bf16 peak")
    else:
        print("no peak FLOP/s known for this device: pass --peak-tflops to get the utilisation")


def count_flops(function) -> int:
    """Matmul and convolution FLOPs of one call of ``function``."""
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


if __name__ == "__main__":
    main()
