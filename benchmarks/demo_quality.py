"""The demo model's quality report: its videos for a fixed prompt set, read back by the world's analyser (colour,
shape, motion direction, centroid-path roughness) on training and held-out colour-shape pairs, with the analyser's
own accuracy on rendered world videos beside each (and on those videos passed through the model's MoVQ, the best
its latents can show), per prompted shape, and on the videos' keyframes alone; FVD (real I3D) of the full model
and of the T2I base alone.

    python benchmarks/demo_quality.py [--model demo] [--count 162] [--held-out-count 54] [--no-fvd]
        [--strip docs/demo_strip.png] [--json results.json]

Prints one line per figure. FVD needs the I3D weights: `kandinsky-video eval fetch-i3d` (or --i3d-weights).
"""

import argparse
import json
import logging
import math
import time

import torch

from kandinsky_video.demo import DEMO
from kandinsky_video.demo.quality import (autoencoded_videos, generate_still_videos, generate_videos, fvd,
                                          prompt_scenes, rendered_videos, score)
from kandinsky_video.evaluation.i3d_weights import load_i3d
from kandinsky_video.evaluation.torchscript import ALLOW_FLAG, RISK
from kandinsky_video.pipelines import PRESETS
from kandinsky_video.pipelines.pipeline_kandinsky3_image import Kandinsky3ImagePipeline
from kandinsky_video.pipelines.export import write_strip
from kandinsky_video.pipelines.loading import IMAGE_ONLY_SETTINGS, generation_defaults, load_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEMO, help="the demo (default) or a recipe's <out>/pipeline folder")
    parser.add_argument("--count", type=int, default=162, help="videos on training colour-shape pairs (162: each scene once)")
    parser.add_argument("--held-out-count", type=int, default=54, help="videos on held-out pairs (54: each scene once)")
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fvd", action="store_true", help="skip FVD (no I3D weights needed)")
    parser.add_argument("--i3d-weights", help="I3D weights (default: those of `kandinsky-video eval fetch-i3d`)")
    parser.add_argument(ALLOW_FLAG, action="store_true", help=f"read a TorchScript --i3d-weights file; {RISK}")
    parser.add_argument("--strip", help="write a PNG strip of example frames here")
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared 2-core machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    defaults = generation_defaults(args.model)
    settings = {k: v for k, v in defaults.items() if k not in IMAGE_ONLY_SETTINGS}
    pipeline = load_pipeline(args.model, torch.float32, "cpu")
    pipeline.set_progress_bar_config(disable=True)
    passes = PRESETS[settings["preset"]]  # each interpolation pass puts k frames between neighbours
    keyframe_stride = (pipeline.interpolation_unet.config.frames_between + 1) ** passes if passes else 1
    print(f"model {args.model}: {json.dumps(settings)}")
    results = {"settings": defaults}
    for split, held_out, count in (("training pairs", False, args.count), ("held-out pairs", True, args.held_out_count)):
        scenes = prompt_scenes(count, held_out, args.seed)
        start = time.perf_counter()
        videos = generate_videos(pipeline, scenes, settings, args.batch_size, args.seed)
        seconds = (time.perf_counter() - start) / len(scenes)
        model_figures = score(scenes, videos)
        keyframe_figures = score(scenes, videos[:, ::keyframe_stride])  # the frames the keyframe U-Net drew
        real = rendered_videos(scenes, videos.shape[1], videos.shape[2])
        analyser_figures = score(scenes, real)
        ceiling = score(scenes, autoencoded_videos(pipeline, real, args.batch_size))
        results[split] = {"videos": len(scenes), "seconds_per_video": seconds, "model": model_figures,
                          "keyframes": keyframe_figures, "analyser_on_world": analyser_figures,
                          "world_through_movq": ceiling}
        for name in ("colour", "shape", "motion"):
            print(f"{split}: {name} accuracy {model_figures[name]:.1%} over {len(scenes)} videos "
                  f"(analyser on world videos: {analyser_figures[name]:.1%}; on them through the model's MoVQ: "
                  f"{ceiling[name]:.1%}; the videos' keyframes alone: {keyframe_figures[name]:.1%})")
        by_shape = "; ".join(f"{name.removeprefix('shape: ')} {model_figures[name]:.1%} (through the MoVQ "
                             f"{ceiling[name]:.1%}, keyframes alone {keyframe_figures[name]:.1%})" for name in model_figures
                             if name.startswith("shape: ") and not math.isnan(model_figures[name]))
        print(f"{split}: shape accuracy by prompted shape: {by_shape}")
        print(f"{split}: centroid-path roughness {model_figures['roughness']:.2f} px/frame^2 "
              f"(world videos: {analyser_figures['roughness']:.2f})")
        print(f"{split}: {seconds:.2f} s per video ({videos.shape[1]} frames, {videos.shape[2]}x{videos.shape[3]})")
        if not held_out:
            train_scenes, train_videos, train_real = scenes, videos, real
    if args.strip:
        write_strip(train_videos[:4], args.strip)
        print(f"strip: {args.strip} (rows: {'; '.join(scene.caption for scene in train_scenes[:4])})")
    if not args.no_fvd:
        image_pipeline = Kandinsky3ImagePipeline.from_video_pipeline(pipeline)
        image_pipeline.set_progress_bar_config(disable=True)
        stills = generate_still_videos(image_pipeline, train_scenes, defaults, train_videos.shape[1],
                                       args.batch_size, args.seed)
        i3d = load_i3d(args.i3d_weights, args.allow_torchscript)
        results["fvd"] = {"full model": fvd(i3d, train_real, train_videos), "T2I base only (still)": fvd(i3d, train_real, stills)}
        for name, value in results["fvd"].items():
            print(f"FVD (styleganv, 16 frames, {len(train_scenes)} videos vs world videos), {name}: {value:.1f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
