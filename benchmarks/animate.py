"""Frames per second of the animation engine: the warps alone, the render loop with instant fake text-to-image /
image-to-image callables (the warp is not the bottleneck), and ``animate`` with a real model (the demo by default).

    python benchmarks/animate.py [--size 512] [--frames 48] [--threads 1] [--model demo] [--strip docs/animation.png]

Prints a markdown table (rows: what was timed, frames/s, ms/frame). The model rows run at the model's own size and
steps (the demo: 64x64, 50 steps for the first frame); ``--strip`` saves frames of the cadence-2 demo animation.
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


def model_rates(model: str, frames: int, strip: str | None) -> dict[str, float]:
    """``animate`` as the command runs it: the first frame by text-to-image, then warp + image-to-image."""
    from kandinsky_video.animation.kandinsky import kandinsky_callables
    from kandinsky_video.pipelines.loading import generation_defaults, load_image_pipeline

    defaults = generation_defaults(model)
    size, steps = defaults.get("height", 512), defaults.get("num_inference_steps", 50)
    pipeline = load_image_pipeline(model, torch.float32, "cpu")
    pipeline.set_progress_bar_config(disable=True)
    text_to_image, image_to_image = kandinsky_callables(pipeline, size, size, steps,
                                                        defaults.get("image_guidance_scale", 3.0))
    rates = {}
    for cadence in (1, 2):
        spec = AnimationSpec(prompts=["a red circle on a gray background"], durations=[(frames - 1) / 12], fps=12,
                             width=size, height=size, cadence=cadence, animation_mode="3D", motion_presets=["zoomin"],
                             seed=0)
        made = []
        start = time.perf_counter()
        count = render_animation(spec, text_to_image, image_to_image, made.append, progress=False)
        rates[f"animate, model {model} ({size}x{size}, {steps} steps), 3D zoomin (constant depth), cadence {cadence}"] = (
            count / (time.perf_counter() - start))
    if strip:
        from kandinsky_video.pipelines.export import write_strip

        picks = write_strip(np.stack(made)[None], strip, frames=8)
        print(f"strip: {strip} (frames {', '.join(map(str, picks))} of {len(made)})")
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="frame width and height")
    parser.add_argument("--frames", type=int, default=48, help="frames timed per row")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--model", default="demo", help="model for the animate rows ('none' skips them)")
    parser.add_argument("--strip", help="save a PNG strip of the model's animation frames here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    rates = {**warp_rates(args.size, args.frames), **render_rates(args.size, args.frames)}
    if args.model != "none":
        rates.update(model_rates(args.model, args.frames, args.strip))
    print(f"{args.size}x{args.size}, {args.frames} frames per row, torch {torch.__version__}, "
          f"{args.threads} CPU thread(s)\n")
    print("| what | frames/s | ms/frame |\n|---|---|---|")
    for label, rate in rates.items():
        print(f"| {label} | {rate:.1f} | {1000 / rate:.1f} |")


if __name__ == "__main__":
    main()
