"""Results files: ``results.json`` with every protocol knob and weight hash, and a short ``report.md``."""

import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ..pipelines.export import atomic_output

RESULT_FILES = ("results.json", "report.md")
PACKAGES = ("kandinsky-video", "torch", "transformers", "diffusers", "numpy", "scipy", "accelerate")


def environment() -> dict:
    """Where and with what the numbers were computed (package versions matter: FVD moves across torch versions)."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def markdown_report(results: dict) -> str:
    """A one-screen summary: the numbers, their protocols, and the settings a reader needs to compare them."""
    metrics, options = results["metrics"], results["options"]
    lines = [
        f"# Evaluation: {results['benchmark']}",
        "",
        f"Computed {results['environment']['created_utc']} with torch "
        f"{results['environment']['packages']['torch']}. Full settings and hashes: `results.json`.",
        "",
        "| metric | value | protocol | videos |",
        "|---|---|---|---|",
    ]
    if "fvd" in metrics:
        fvd, protocol = metrics["fvd"], metrics["fvd"]["protocol"]
        knobs = (
            f"{protocol['name']}: resize {protocol['resize']}, range {list(protocol['input_range'])}, covariance "
            f"{protocol['covariance']}, sqrtm {protocol['sqrtm']}, {protocol['precision']}"
        )
        lines.append(f"| FVD | {fvd['value']:.2f} | {knobs} | {fvd['num_real']} real / {fvd['num_fake']} generated |")
    if "is" in metrics:
        score, protocol = metrics["is"], metrics["is"]["protocol"]
        knobs = f"{protocol['name']}: {protocol['num_splits']} splits, shuffle seed {protocol['shuffle_seed']}"
        lines.append(f"| IS | {score['mean']:.2f} ± {score['std']:.2f} | {knobs} | {score['num_videos']} |")
    if "clipsim" in metrics:
        clip = metrics["clipsim"]
        lines.append(
            f"| CLIPSIM | {clip['value']:.4f} | {clip['convention']}; {clip['clip_model']} | {clip['num_videos']} |"
        )
    lines += [
        "",
        f"Clips: {options['num_frames']} frames (IS: 16), frame stride real {options['real_frame_stride']} / "
        f"generated {options['fake_frame_stride']}, brought to {options['resolution'] or 'native'} px squares; "
        f"real clips start at a {options['real_offset']} frame (seed {options['seed']}), generated clips at frame 0; "
        f"real subset: {options['real_subset']} (max {options['max_real'] or 'all'}).",
    ]
    for key, value in results.get("data", {}).items():
        lines.append(f"- {key}: {value}")
    lines += skipped_lines(metrics)
    if "fvd" in metrics:
        lines.append(f"- I3D sha256: `{metrics['fvd']['i3d_sha256']}`")
    if "is" in metrics:
        lines.append(f"- C3D sha256: `{metrics['is']['c3d_sha256']}`")
    return "\n".join(lines) + "\n"


def skipped_lines(metrics: dict, shown: int = 10) -> list[str]:
    """One line per metric and set that skipped videos: how many were too short or unreadable, and which."""
    sets = [
        ("fvd", "FVD real", "real_"),  # (metric, label, key prefix of its too_short / unreadable fields)
        ("fvd", "FVD generated", "fake_"),
        ("is", "IS", ""),
        ("clipsim", "CLIPSIM", ""),
    ]
    lines = []
    for key, label, prefix in sets:
        result = metrics.get(key, {})
        too_short, unreadable = result.get(f"{prefix}too_short"), result.get(f"{prefix}unreadable")
        if not (too_short or unreadable):
            continue  # not computed, nothing skipped, or real statistics from the cache (None)
        line = f"- {label}: skipped {too_short} too short, {unreadable} unreadable"
        if unreadable:
            names = [f"`{name}`" for name in result[f"{prefix}unreadable_files"]]
            line += ": " + ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
        lines.append(line)
    return lines


def write_results(folder: str | Path, results: dict) -> tuple[Path, Path]:
    """Write ``results.json`` and ``report.md`` into ``folder``; returns both paths."""
    json_path, markdown_path = (Path(folder) / name for name in RESULT_FILES)
    for path, text in ((json_path, json.dumps(results, indent=1, default=str)), (markdown_path, markdown_report(results))):
        with atomic_output(path) as partial:
            partial.write_text(text)
    return json_path, markdown_path
