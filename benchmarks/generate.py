"""Time and peak memory of each generation stage.

    python benchmarks/generate.py            # CPU: the tiny pipeline (kandinsky_video.testing)
    python benchmarks/generate.py --full     # GPU: full-size models, random weights, bf16, 512x512 `high`

With a GPU it also reports the keyframe U-Net's achieved TFLOP/s (FLOPs from torch.utils.flop_counter) against
the card's bf16 peak. Record results with machine and date in docs/benchmarks.md.
"""

import argparse
import platform
import resource
import time
from contextlib import contextmanager

import torch
from diffusers import VQModel
from torch.utils.flop_counter import FlopCounterMode
from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

from kandinsky_video import (KandinskyVideoInterpolationUNet, KandinskyVideoPipeline, KandinskyVideoScheduler,
                             KandinskyVideoUNet, TextProjection)
from kandinsky_video.models.movq_video import KANDINSKY3_MOVQ_CONFIG
from kandinsky_video.pipelines.pipeline_kandinsky_video import PRESETS
from kandinsky_video.testing import tiny_pipeline

# Flan-UL2's encoder (d_model 4096): the text encoder of Kandinsky 3.0 / Kandinsky Video.
FLAN_UL2_ENCODER = dict(vocab_size=32128, d_model=4096, d_kv=256, d_ff=16384, num_layers=32, num_heads=16,
                        feed_forward_proj="gated-gelu", tie_word_embeddings=False)
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, per card, from the vendors' sheets


def full_size_pipeline(device: torch.device):
    with torch.device(device):
        return KandinskyVideoPipeline(
            tokenizer=ByT5Tokenizer(),  # tokenisation cost is negligible; any tokenizer with T5 conventions works
            text_encoder=T5EncoderModel(T5Config(**FLAN_UL2_ENCODER)).to(torch.bfloat16),
            text_projection=TextProjection(),
            unet=KandinskyVideoUNet().to(torch.bfloat16),
            movq=VQModel(**KANDINSKY3_MOVQ_CONFIG).to(torch.bfloat16),
            scheduler=KandinskyVideoScheduler(),
            interpolation_unet=KandinskyVideoInterpolationUNet().to(torch.bfloat16),
            interpolation_scheduler=KandinskyVideoScheduler(prediction_type="v_prediction"),
        )


@contextmanager
def stage(name: str, results: dict, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize()
        memory = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB GPU peak"
    else:
        memory = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB process RSS peak so far"
    results[name] = time.perf_counter() - start
    print(f"{name:<22} {results[name]:8.2f} s   {memory}")


def unet_tflops(pipeline, keyframes: int, latent: int, seconds_per_forward: float) -> float:
    unet = pipeline.unet
    sample = torch.randn(2, 4, keyframes, latent, latent, device=unet.device, dtype=unet.dtype)
    context = torch.randn(2, 128, unet.config.cross_attention_dim, device=unet.device, dtype=unet.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(sample, 500, context, torch.ones(2, 128, device=unet.device, dtype=torch.long))
    return counter.get_total_flops() / seconds_per_forward / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full-size random-weight models (needs a CUDA GPU)")
    parser.add_argument("--preset", default="high", choices=sorted(PRESETS))
    parser.add_argument("--size", type=int, help="height = width (default 512 full, 64 tiny)")
    parser.add_argument("--keyframes", type=int, default=16)
    parser.add_argument("--steps", type=int, help="steps per stage (default 50 full, 10 tiny)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the U-Nets")
    args = parser.parse_args()
    if args.full and not torch.cuda.is_available():
        parser.error("--full needs a CUDA GPU")
    device = torch.device("cuda" if args.full else "cpu")
    size, steps = args.size or (512 if args.full else 64), args.steps or (50 if args.full else 10)
    pipeline = full_size_pipeline(device) if args.full else tiny_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    if args.compile:
        pipeline.unet.compile()
        pipeline.interpolation_unet.compile()
    name = torch.cuda.get_device_name() if args.full else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"{'full-size' if args.full else 'tiny'} pipeline on {name}: {size}x{size}, {args.keyframes} keyframes, "
          f"preset {args.preset}, {steps} steps per stage")

    results: dict[str, float] = {}
    generator = torch.Generator(device="cpu").manual_seed(0)
    with torch.no_grad():
        with stage("text encoding", results, device):
            text = pipeline.encode_prompt(["a red panda eating bamboo in the snow"], None, 1)
        with stage("keyframes", results, device):
            video = pipeline.generate_keyframes(text, args.keyframes, size, size, steps, 5.0, generator, None, None)
        for index, skip in enumerate(pipeline.interpolation_skips(PRESETS[args.preset])):
            with stage(f"interpolation {index + 1}", results, device):
                video = pipeline.interpolate(video, steps, 0.25, skip, generator, None, f"interpolation {index + 1}")
        with stage(f"decode ({video.shape[2]} frames)", results, device):
            pipeline.decode(video, chunk_size=8)
    print(f"{'total':<22} {sum(results.values()):8.2f} s")

    if args.full:
        per_forward = results["keyframes"] / steps
        achieved = unet_tflops(pipeline, args.keyframes, size // 8, per_forward)
        peak = next((value for key, value in BF16_PEAK_TFLOPS.items() if key in name), None)
        share = f" = {100 * achieved / peak:.0f}% of the {peak:.0f} TFLOP/s bf16 peak" if peak else ""
        print(f"keyframe U-Net (guidance batch): {achieved:.0f} TFLOP/s{share}")


if __name__ == "__main__":
    main()
