"""The ``kandinsky-video`` command."""

import argparse
import logging
import sys


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
    convert.add_argument("--output", "-o", required=True, help="output folder")
    convert.add_argument("--groups", type=int, default=32, help="U-Net GroupNorm groups (32 for the published model)")
    convert.add_argument("--attention-head-dim", type=int, default=64, help="U-Net attention head width (64)")
    convert.add_argument("--movq-norm-groups", type=int, default=32, help="MoVQ GroupNorm groups (32)")
    convert.set_defaults(run=run_convert)
    return parser


def run_convert(args: argparse.Namespace) -> None:
    from .convert.published import convert_published

    for folder in convert_published(
        args.output,
        keyframe_checkpoint=args.keyframe_ckpt,
        interpolation_checkpoint=args.interpolation_ckpt,
        movq_checkpoint=args.movq_ckpt,
        groups=args.groups,
        attention_head_dim=args.attention_head_dim,
        movq_norm_groups=args.movq_norm_groups,
    ):
        print(f"wrote {folder}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"kandinsky-video {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
