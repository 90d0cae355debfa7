"""Frames per second of the animation engine without an image model: the warps alone, and the whole render loop with
instant fake text-to-image / image-to-image callables, to show the warp is not the bottleneck.

    python benchmarks/animate.py [--size 512] [--frames 48] [--threads 2]

Prints a markdown table (rows: what was timed, frames/s, ms/frame).
"""

import argparse
import logging
import time

import numpy as np
import torch

from kandinsky_video.animation import AnimationSpec, ConstantDepth, motion_matrix_2d, render_animation, warp_2d, warp_3d


def frames_per_second(step, frames: int) -> float:
    step(0)  # warm-up
    start = time.perf_counter()
    for frame in range(frames):
        step(frame)
    return frames / (time.perf_counter() - start)


def warp_rates(size: int, frames: int) -> dict[str, float]:
    image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    depth = ConstantDepth()

    def flat(frame):
        warp_2d(image, motion_matrix_2d(size, size, angle=0.5, zoom=1.02, translation_x=1.5, translation_y=-1.0))

    def tilted(frame):
        matrix = motion_matrix_2d(size, size, angle=0.5, zoom=1.02, translation_x=1.5, perspective=(1.0, 3.0, 2.0, 56))
        warp_2d(image, matrix, border="wrap")

    def three_d(frame):
        warp_3d(image, depth(image), (1.5, -1.0, 2.0), (0.5, 1.0, 0.2), fov=40.0)

    return {"2D warp (bicubic, replicate)": frames_per_second(flat, frames),
            "2D warp + perspective flip (bicubic, wrap)": frames_per_second(tilted, frames),
            "3D warp (bicubic, constant depth)": frames_per_second(three_d, frames)}


def render_rates(size: int, frames: int) -> dict[str, float]:
    first = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    rates = {}
    for cadence, coherence in ((1, "none"), (2, "none"), (1, "LAB")):
        spec = AnimationSpec(prompts=["a"], durations=[(frames - 1) / 24], fps=24, width=size, height=size,
                             cadence=cadence, color_coherence=coherence, animation_mode="3D",
                             translation_z="0:(2)", rotation_3d_y="0:(0.5)", noise="0:(0.02)")
        start = time.perf_counter()
        count = render_animation(spec, lambda prompt, seed: first, lambda image, prompt, strength, seed: image,
                                 progress=False)
        label = f"render_animation, instant fake model, 3D, cadence {cadence}, colour coherence {coherence}"
        rates[label] = count / (time.perf_counter() - start)
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="frame width and height")
    parser.add_argument("--frames", type=int, default=48, help="frames timed per row")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    rates = {**warp_rates(args.size, args.frames), **render_rates(args.size, args.frames)}
    print(f"{args.size}x{args.size}, {args.frames} frames per row, torch {torch.__version__}, "
          f"{args.threads} CPU thread(s)\n")
    print("| what | frames/s | ms/frame |\n|---|---|---|")
    for label, rate in rates.items():
        print(f"| {label} | {rate:.1f} | {1000 / rate:.1f} |")


if __name__ == "__main__":
    main()
