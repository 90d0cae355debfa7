"""The ``kandinsky-video`` command."""

import argparse
import logging
import sys
from pathlib import Path

import torch

from .animation.spec import CADENCE, MOTION_PRESETS, SECONDS
from .demo import DEMO
from .evaluation.cli import add_eval_parser
from .training.cli import add_train_parser
from .pipelines.limits import FPS, MAX_SEED, SIZE, Range, flag
from .pipelines.pipeline_kandinsky_video import PRESETS

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
VIDEO_SUFFIXES = (".mp4", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
OVERWRITE_HELP = "replace output files that already exist (default: refuse, so no earlier result is lost)"
WIDTHS = Range(1, 4096, integer=True)  # converter layer widths and group counts
PORT = Range(1, 65535, integer=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kandinsky-video", description="Kandinsky Video: text-to-video on Kandinsky 3.0")
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser(
        "convert",
        help="convert the published Kandinsky Video 1.0 checkpoints into model folders",
        description="Reads the published pickles safely (tensors only), checks every key and shape, "
        "and writes unet/, text_projection/, interpolation_unet/ and movq/ folders in safetensors.",
    )
    convert.add_argument("--keyframe-ckpt", help="kandinsky_video.pt")
    convert.add_argument("--interpolation-ckpt", help="kandinsky_video_interpolation.pt")
    convert.add_argument("--movq-ckpt", help="movq.pt")
    convert.add_argument("--inpainting-ckpt", help="kandinsky3_inpainting.pt (Kandinsky 3.1), for `image --mask`")
    convert.add_argument("--inpainting-projection-ckpt", help="projection_inpainting.pt (Kandinsky 3.1)")
    convert.add_argument("--output", "-o", required=True, help="output folder")
    convert.add_argument("--overwrite", action="store_true", help="replace model folders that already exist in "
                         "--output (default: refuse; new ones, e.g. inpainting weights, are always added)")
    convert.add_argument("--groups", type=flag(WIDTHS), default=32,
                         help="U-Net GroupNorm groups (32 for the published model)")
    convert.add_argument("--attention-head-dim", type=flag(WIDTHS), default=64, help="U-Net attention head width (64)")
    convert.add_argument("--movq-norm-groups", type=flag(WIDTHS), default=32, help="MoVQ GroupNorm groups (32)")
    convert.add_argument("--kandinsky3", help="also assemble a complete pipeline folder in --output, taking the "
                         "tokenizer and text encoder from this Kandinsky 3.0 folder or hub id")
    convert.set_defaults(run=run_convert)

    generate = commands.add_parser(
        "generate", help="text to video", description="Generate a video from a prompt (or one per line of --prompts)."
    )
    generate.add_argument("prompt", nargs="?", help="what the video shows")
    generate.add_argument("-o", "--output", help="output file (.mp4 or .gif)")
    generate.add_argument("--prompts", help="a text file with one prompt per line (use with --out-dir)")
    generate.add_argument("--out-dir", help="folder for the videos of --prompts (numbered .mp4 files)")
    generate.add_argument("--model", required=True, help="pipeline folder (model_index.json), hub id, or demo (the "
                          "tiny shipped model: runs on a CPU)")
    generate.add_argument("--preset", choices=sorted(PRESETS),
                          help="low: keyframes; medium/high: 1/2 interpolation passes (default: the model's, else low)")
    generate.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    generate.add_argument("--negative-prompt")
    generate.add_argument("--seed", type=flag("seed"), default=0,
                          help=f"0 to {MAX_SEED}; video i of --prompts uses seed + i (default 0)")
    generate.add_argument("--height", type=flag("height"), help="multiple of 64 (default: the model's, else 512)")
    generate.add_argument("--width", type=flag("width"), help="multiple of 64 (default: the model's, else 512)")
    generate.add_argument("--keyframes", type=flag("num_keyframes"),
                          help="number of keyframes (default: the model's, else 15 as released)")
    generate.add_argument("--steps", type=flag("num_inference_steps"),
                          help="keyframe diffusion steps (default: the model's, else 50)")
    generate.add_argument("--interpolation-steps", type=flag("interpolation_steps"),
                          help="interpolation diffusion steps (default: --steps)")
    generate.add_argument("--guidance-scale", type=flag("guidance_scale"),
                          help="w in (1+w)*cond - w*uncond, 0 to 100 (default: the model's, else 5)")
    generate.add_argument("--interpolation-guidance-scale", type=flag("interpolation_guidance_scale"),
                          help="0 to 100 (default: the model's, else 0.25)")
    generate.add_argument("--fps", type=flag(FPS), help="override the frame rate (default: real-time motion)")
    generate.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    generate.add_argument("--dtype", default="bf16" if torch.cuda.is_available() else "fp32", choices=sorted(DTYPES))
    generate.add_argument("--offload", default="none", choices=("none", "model", "sequential"),
                          help="model: one model on the GPU at a time; sequential: layer by layer (slowest, least memory)")
    generate.add_argument("--decode-chunk-size", type=flag("decode_chunk_size"), default=8,
                          help="frames decoded at once (memory only)")
    generate.add_argument("--compile", action="store_true", help="torch.compile the U-Nets (pays off for long runs)")
    generate.set_defaults(run=run_generate)

    image = commands.add_parser("image", help="Kandinsky 3 text-to-image, image-to-image and inpainting",
                                description="Runs on the frozen Kandinsky 3.0 U-Net and MoVQ of a video model folder.")
    image.add_argument("prompt")
    image.add_argument("-o", "--output", required=True, help="output image (.png, .jpg)")
    image.add_argument("--model", required=True, help="pipeline folder, hub id, or demo (the tiny shipped model)")
    image.add_argument("--init", help="input image: image-to-image (or the image to inpaint with --mask)")
    image.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    image.add_argument("--strength", type=flag("strength"), default=0.3, help="denoising strength: the fraction of "
                       "the schedule re-run, in (0, 1] (0.3 keeps most of --init, 1.0 ignores it)")
    image.add_argument("--mask", help="mask image, white = repaint (needs --init and converted inpainting weights)")
    image.add_argument("--dilate-mask", action="store_true", help="grow the mask as the released example does")
    image.add_argument("--negative-prompt")
    image.add_argument("--seed", type=flag("seed"), default=0, help=f"0 to {MAX_SEED} (default 0)")
    image.add_argument("--height", type=flag("height"), help="multiple of 64 (default: the model's, else 512)")
    image.add_argument("--width", type=flag("width"), help="multiple of 64 (default: the model's, else 512)")
    image.add_argument("--steps", type=flag("num_inference_steps"), help="diffusion steps (default: the model's, else 50)")
    image.add_argument("--guidance-scale", type=flag("image_guidance_scale"),
                       help="w in (1+w)*cond - w*uncond (default: the model's, else 3.0; 4.0 inpainting)")
    image.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    image.add_argument("--dtype", default="bf16" if torch.cuda.is_available() else "fp32", choices=sorted(DTYPES))
    image.set_defaults(run=run_image)

    animate = commands.add_parser(
        "animate", help="camera-path animation of a still scene (Kandinsky Deforum)",
        description="Text-to-image for frame 0, then warp + image-to-image per frame along a camera path. "
        "Settings come from --spec FILE.yaml and/or the flags (flags win).")
    animate.add_argument("--prompt", action="append", help="a prompt; repeat for a sequence (with --duration each)")
    animate.add_argument("--duration", action="append", type=flag(SECONDS),
                         help=f"seconds per --prompt, at most {SECONDS.high:g} (default 4)")
    animate.add_argument("--spec", help="a YAML animation spec (see configs/animation/)")
    animate.add_argument("--motion", action="append", help=f"motion preset per prompt: {', '.join(sorted(MOTION_PRESETS))}")
    animate.add_argument("--schedule", action="append", default=[], metavar="NAME=SCHEDULE",
                         help='a parameter schedule, e.g. zoom="0:(1.02), 24:(1.0)" (repeatable)')
    animate.add_argument("--mode", choices=("2D", "3D"), help="warp mode")
    animate.add_argument("--depth", help="a transformers depth model (local folder or hub id) for 3D; default: constant depth")
    animate.add_argument("--denoise-strength", help="diffusers strength per diffused frame (fraction re-run), "
                         "a number or a schedule (default 0.13)")
    animate.add_argument("--cadence", type=flag(CADENCE), help="diffuse every N-th frame (default 2)")
    animate.add_argument("--fps", type=flag(FPS))
    animate.add_argument("--size", type=flag(SIZE), help="height = width, a multiple of 64 (default: the spec's, else "
                         "the model's, else 640)")
    animate.add_argument("--seed", type=flag("seed"))
    animate.add_argument("-o", "--output", required=True, help="output .mp4")
    animate.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    animate.add_argument("--model", required=True, help="pipeline folder, hub id, or demo (the tiny shipped model)")
    animate.add_argument("--steps", type=flag("num_inference_steps"),
                         help="diffusion steps of a full text-to-image (default: the model's, else 50)")
    animate.add_argument("--guidance-scale", type=flag("image_guidance_scale"), help="(default: the model's, else 3.0)")
    animate.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    animate.add_argument("--dtype", default="bf16" if torch.cuda.is_available() else "fp32", choices=sorted(DTYPES))
    animate.set_defaults(run=run_animate)

    add_eval_parser(commands)
    add_train_parser(commands)

    app = commands.add_parser("app", help="a local web app (text to video, animation, image) in the browser",
                              description="Needs Gradio: pip install -e '.[app]'. Binds to 127.0.0.1 unless --host says otherwise.")
    app.add_argument("--model", required=True, help="pipeline folder, hub id, or demo (the tiny shipped model)")
    app.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes it to your network)")
    app.add_argument("--port", type=flag(PORT), help="port (default: Gradio's first free one from 7860)")
    app.add_argument("--size", type=flag(SIZE),
                     help="default height and width in the page (default: the model's, else 512)")
    app.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    app.add_argument("--dtype", default="bf16" if torch.cuda.is_available() else "fp32", choices=sorted(DTYPES))
    app.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    app.set_defaults(run=run_app)
    return parser


def run_convert(args: argparse.Namespace) -> None:
    from .convert.published import convert_published

    for folder in convert_published(
        args.output,
        keyframe_checkpoint=args.keyframe_ckpt,
        interpolation_checkpoint=args.interpolation_ckpt,
        movq_checkpoint=args.movq_ckpt,
        inpainting_checkpoint=args.inpainting_ckpt,
        inpainting_projection=args.inpainting_projection_ckpt,
        groups=args.groups,
        attention_head_dim=args.attention_head_dim,
        movq_norm_groups=args.movq_norm_groups,
        kandinsky3=args.kandinsky3,
        overwrite=args.overwrite,
    ):
        print(f"wrote {folder}")


def run_generate(args: argparse.Namespace) -> None:
    from .pipelines import write_video
    from .pipelines.loading import load_pipeline

    jobs = generation_jobs(args)
    if args.device == "cpu" and args.model != DEMO:
        logging.getLogger("kandinsky_video").warning("running on the CPU: full-size models take hours; use a GPU")
    settings = video_settings(args)
    pipeline = load_pipeline(args.model, DTYPES[args.dtype], args.device, args.offload)
    if args.compile:
        for unet in (pipeline.unet, pipeline.interpolation_unet):
            if unet is not None:
                unet.compile()
    for index, (prompt, path) in enumerate(jobs):
        result = pipeline(prompt, negative_prompt=args.negative_prompt, decode_chunk_size=args.decode_chunk_size,
                          generator=torch.Generator("cpu").manual_seed(args.seed + index), **settings)
        write_video(result.frames[0], path, args.fps or result.fps)
        print(f"wrote {path} ({result.frames.shape[1]} frames, {args.fps or result.fps:g} fps, seed {args.seed + index})")


def run_image(args: argparse.Namespace) -> None:
    from PIL import Image

    from .pipelines.export import write_image
    from .pipelines.loading import load_image_pipeline

    if not args.prompt.strip():
        raise ValueError("the prompt is empty: say what the image should show")
    if args.mask and not args.init:
        raise ValueError("--mask needs --init, the image to inpaint")
    output = check_output(Path(args.output), IMAGE_SUFFIXES, args.overwrite)
    inputs = {}
    for name, path in (("image", args.init), ("mask_image", args.mask)):
        if path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path} does not exist")
            inputs[name] = Image.open(path).convert("RGB" if name == "image" else "L")
    settings = image_settings(args, ("height", "width"))
    pipeline = load_image_pipeline(args.model, DTYPES[args.dtype], args.device, inpainting=bool(args.mask))
    images = pipeline(
        args.prompt, negative_prompt=args.negative_prompt, strength=args.strength, dilate_mask=args.dilate_mask,
        height=settings["height"], width=settings["width"], num_inference_steps=settings["steps"],
        guidance_scale=settings["guidance_scale"], generator=torch.Generator("cpu").manual_seed(args.seed), **inputs,
    ).images
    write_image(images[0], output)
    print(f"wrote {output} ({images[0].width}x{images[0].height}, seed {args.seed})")


def animation_spec(args: argparse.Namespace, size: int | None = None):
    """The spec file (if any) overridden by the flags; ``size`` (the model's) where neither sets one. Every value is
    validated by AnimationSpec."""
    import yaml

    from .animation import AnimationSpec

    settings = {}
    if args.spec:
        if not Path(args.spec).is_file():
            raise FileNotFoundError(f"animation spec {args.spec} does not exist")
        settings = yaml.safe_load(Path(args.spec).read_text()) or {}
    if size is not None:
        settings.setdefault("width", size)
        settings.setdefault("height", size)
    if args.prompt:
        settings["prompts"] = args.prompt
        settings["durations"] = args.duration or [4.0] * len(args.prompt)
    if args.motion:
        settings["motion_presets"] = args.motion
    for item in args.schedule:
        name, _, value = item.partition("=")
        if not value:
            raise ValueError(f"--schedule {item!r}: write NAME=SCHEDULE, e.g. zoom=\"0:(1.02)\"")
        settings[name.strip()] = value.strip().strip('"')
    if args.denoise_strength is not None:
        value = args.denoise_strength
        settings["denoise_strength"] = value if ":" in value else f"0:({value})"
    for key, value in (("animation_mode", args.mode), ("cadence", args.cadence), ("fps", args.fps),
                       ("seed", args.seed), ("width", args.size), ("height", args.size)):
        if value is not None:
            settings[key] = value
    if "prompts" not in settings:
        raise ValueError("give at least one --prompt (or a --spec with prompts)")
    return AnimationSpec.from_dict(settings)


def run_animate(args: argparse.Namespace) -> None:
    from .animation import Mp4Writer, TransformersDepth, render_animation
    from .animation.kandinsky import kandinsky_callables
    from .pipelines.loading import load_image_pipeline

    check_output(Path(args.output), (".mp4",), args.overwrite)
    settings = image_settings(args, ("size",))
    spec = animation_spec(args, settings["size"])
    if spec.width % 64 or spec.height % 64:
        raise ValueError(f"animation size {spec.width}x{spec.height} must be multiples of 64 (use --size)")
    depth = TransformersDepth(args.depth, device=args.device) if args.depth else None
    pipeline = load_image_pipeline(args.model, DTYPES[args.dtype], args.device)
    text_to_image, image_to_image = kandinsky_callables(pipeline, spec.height, spec.width, settings["steps"],
                                                        settings["guidance_scale"] or 3.0)
    with Mp4Writer(args.output, fps=spec.fps) as writer:
        frames = render_animation(spec, text_to_image, image_to_image, writer, depth=depth)
    print(f"wrote {args.output} ({frames} frames, {spec.fps:g} fps)")


def run_app(args: argparse.Namespace) -> None:
    try:
        from .app.ui import launch
    except ImportError as error:
        raise ValueError(f"the web app needs Gradio ({error}); install it with pip install -e '.[app]'") from error
    launch(args.model, args.host, args.port, args.device, DTYPES[args.dtype], args.share, args.size)


VIDEO_FLAGS = {"preset": "preset", "height": "height", "width": "width", "keyframes": "num_keyframes",
               "steps": "num_inference_steps", "interpolation_steps": "interpolation_steps",
               "guidance_scale": "guidance_scale", "interpolation_guidance_scale": "interpolation_guidance_scale"}


def video_settings(args: argparse.Namespace) -> dict:
    """Pipeline arguments: the flags given, else the model folder's ``generation_defaults.json``, else the call's."""
    from .pipelines.loading import IMAGE_ONLY_SETTINGS, generation_defaults

    settings = {k: v for k, v in generation_defaults(args.model).items() if k not in IMAGE_ONLY_SETTINGS}
    settings.update({VIDEO_FLAGS[flag]: getattr(args, flag) for flag in VIDEO_FLAGS if getattr(args, flag) is not None})
    return settings


def image_settings(args: argparse.Namespace, size_flags: tuple[str, ...]) -> dict:
    """Size, steps and guidance for the image modes: the flags given, else the model folder's defaults."""
    from .pipelines.loading import generation_defaults

    defaults = generation_defaults(args.model)
    given = {"steps": args.steps, "guidance_scale": args.guidance_scale}
    given.update({name: getattr(args, name) for name in size_flags})
    fallback = {"steps": defaults.get("num_inference_steps", 50), "guidance_scale": defaults.get("image_guidance_scale"),
                "height": defaults.get("height", 512), "width": defaults.get("width", 512),
                "size": defaults.get("height")}
    return {name: fallback[name] if value is None else value for name, value in given.items()}


def generation_jobs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(prompt, output path) pairs, checked before any model is loaded."""
    if args.prompts:
        if args.prompt or args.output:
            raise ValueError("give either a PROMPT with -o, or --prompts FILE with --out-dir, not both")
        if not args.out_dir:
            raise ValueError("--prompts needs --out-dir for the videos")
        prompts = read_prompts(Path(args.prompts))
        if args.seed + len(prompts) - 1 > MAX_SEED:
            raise ValueError(f"--seed {args.seed} + {len(prompts) - 1} (one seed per prompt) passes the largest seed "
                             f"{MAX_SEED}; use a smaller --seed")
        out_dir = Path(args.out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out-dir {out_dir} is a file; give a folder for the videos")
        jobs = [(prompt, out_dir / f"{i:04d}.mp4") for i, prompt in enumerate(prompts)]
        existing = [path for _, path in jobs if path.exists()]
        if existing and not args.overwrite:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise ValueError(f"{existing[0]}{more} exist; pass --overwrite to replace them, or choose another --out-dir")
        return jobs
    if not args.prompt or not args.prompt.strip():
        raise ValueError("the prompt is empty: say what the video should show")
    if not args.output:
        raise ValueError("say where to write the video with -o out.mp4 (or .gif)")
    return [(args.prompt, check_output(Path(args.output), VIDEO_SUFFIXES, args.overwrite))]


def read_prompts(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 prompt file."""
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"prompt file {path} is not UTF-8 text (byte {error.start} cannot be decoded); save it as "
                         "UTF-8") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt file {path} has no prompts (one per line)")
    return prompts


def check_output(path: Path, suffixes: tuple[str, ...], overwrite: bool) -> Path:
    """Refuse, before any model loads, an output that cannot be written or would silently replace a file."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name, e.g. {path / ('output' + suffixes[0])}")
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"cannot write {path.name!r}: the output file must end in {' or '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists; pass --overwrite to replace it, or choose another output name")
    return path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as error:  # bad input and unreadable or unwritable files: a message, not a traceback
        command = " ".join(filter(None, (args.command, getattr(args, "eval_command", None))))
        print(f"kandinsky-video {command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
