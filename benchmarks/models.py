"""Full-size model sizes against the published ones; with a GPU, the keyframe U-Net's bf16 forward time and memory.

    python benchmarks/models.py [--frames 16] [--latent 64] [--repeats 5]

Models are built on the meta device (no memory, no weights), so the counts run anywhere in seconds.
"""

import argparse
import time

import torch
from diffusers import VQModel

from kandinsky_video.models.movq_video import KANDINSKY3_MOVQ_CONFIG
from kandinsky_video.models.text_encoder import TextProjection
from kandinsky_video.models.unet_interpolation import KandinskyVideoInterpolationUNet
from kandinsky_video.models.unet_keyframe import KandinskyVideoUNet

# Published parameter counts (reference kandinsky-video-1.0.md section 1; MoVQ from original-keys/movq.tsv).
PUBLISHED = {
    "keyframe U-Net (without text projection)": 4_143_739_012,
    "interpolation U-Net (without null embedding)": 3_872_572_046,
    "MoVQ (without codebook)": 270_603_567,
}


def count(model: torch.nn.Module, skip: tuple[str, ...] = ()) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(skip))


def parameter_counts() -> dict[str, int]:
    with torch.device("meta"):
        keyframe = KandinskyVideoUNet()
        interpolation = KandinskyVideoInterpolationUNet()
        movq = VQModel(**KANDINSKY3_MOVQ_CONFIG)
        projection = TextProjection()
    return {
        "keyframe U-Net (without text projection)": count(keyframe),
        "  of which temporal (trainable)": sum(p.numel() for p in keyframe.temporal_parameters()),
        "interpolation U-Net (without null embedding)": count(interpolation, ("null_embedding",)),
        "MoVQ (without codebook)": count(movq, ("quantize.",)),
        "text projection + null embedding": count(projection),
    }


def gpu_forward(frames: int, latent: int, repeats: int) -> None:
    """bf16 forward of the random-weight keyframe U-Net on a guidance batch (2 videos), 128 text tokens."""
    device = torch.device("cuda")
    model = KandinskyVideoUNet().to(device, torch.bfloat16).eval()
    sample = torch.randn(2, 4, frames, latent, latent, device=device, dtype=torch.bfloat16)
    context = torch.randn(2, 128, 4096, device=device, dtype=torch.bfloat16)
    mask = torch.ones(2, 128, device=device, dtype=torch.long)
    with torch.no_grad():
        model(sample, 500, context, mask)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(repeats):
            model(sample, 500, context, mask)
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    print(f"keyframe U-Net bf16 forward, 2 x {frames} x {latent}x{latent} latents on {torch.cuda.get_device_name()}: "
          f"{seconds * 1000:.1f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name, value in parameter_counts().items():
        published = PUBLISHED.get(name)
        check = "" if published is None else f"  published {published:>15,}  {'match' if value == published else 'MISMATCH'}"
        print(f"{name:<46} {value:>15,}{check}")
    if torch.cuda.is_available():
        gpu_forward(args.frames, args.latent, args.repeats)
    else:
        print("no GPU: skipping the bf16 forward timing")


if __name__ == "__main__":
    main()
