"""Where training videos and their captions come from: a CSV / JSONL manifest, or a folder of videos with captions.

Manifest columns (CSV header or JSON keys): ``video`` (or ``path``), ``caption`` (or ``text``), and optional
``start`` / ``end`` in seconds, which limit the clip to that part of the video. Relative video paths are relative to
the manifest's folder. A folder source pairs every video with the same-named ``.txt`` file beside it.
"""

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv")
PATH_COLUMNS = ("video", "path")
CAPTION_COLUMNS = ("caption", "text")


@dataclass(frozen=True)
class VideoRecord:
    """One training video: its file, its caption, and optionally the span (seconds) clips may be cut from."""

    path: str
    caption: str
    start: float | None = None
    end: float | None = None


def load_records(source: str | os.PathLike) -> list[VideoRecord]:
    """Records from a manifest (``.csv`` / ``.jsonl``) or a folder of videos with same-named ``.txt`` captions.

    Video files are not opened here: unreadable or missing ones are skipped (and counted) when clips are read.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(
            f"training data {source} does not exist; set data.source to a .csv/.jsonl manifest or a video folder"
        )
    if source.is_dir():
        records = _scan_folder(source)
    elif source.suffix.lower() == ".csv":
        with open(source, newline="") as file:
            records = [_record(row, source, line) for line, row in enumerate(csv.DictReader(file), start=2)]
    elif source.suffix.lower() == ".jsonl":
        with open(source) as file:
            rows = [(number, line) for number, line in enumerate(file, start=1) if line.strip()]
        records = [_record(_json_row(line, source, number), source, number) for number, line in rows]
    else:
        raise ValueError(f"data.source {source} must be a .csv or .jsonl manifest or a folder of videos")
    if not records:
        raise ValueError(f"{source} lists no videos; add rows (video, caption) or videos with .txt captions")
    return records


def _scan_folder(folder: Path) -> list[VideoRecord]:
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))
    missing = [str(video) for video in videos if not video.with_suffix(".txt").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} videos in {folder} have no same-named .txt caption, e.g. {missing[:3]}; add captions "
            "or list the videos in a manifest"
        )
    return [VideoRecord(str(video), video.with_suffix(".txt").read_text().strip()) for video in videos]


def _json_row(line: str, source: Path, number: int) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}:{number} is not valid JSON ({error})") from error
    if not isinstance(row, dict):
        raise ValueError(f"{source}:{number} must be a JSON object with video and caption keys")
    return row


def _record(row: dict, source: Path, line: int) -> VideoRecord:
    """One manifest row -> VideoRecord; errors name the file, the line and the columns found."""
    path = next((row[key] for key in PATH_COLUMNS if row.get(key)), None)
    caption = next((row[key] for key in CAPTION_COLUMNS if row.get(key) is not None), None)
    if path is None or caption is None:
        raise ValueError(
            f"{source}:{line} needs a video path column {PATH_COLUMNS} and a caption column {CAPTION_COLUMNS}; "
            f"found {sorted(row)}"
        )
    start, end = (_seconds(row.get(key), key, source, line) for key in ("start", "end"))
    if start is not None and end is not None and end <= start:
        raise ValueError(f"{source}:{line} has end={end} <= start={start} seconds")
    video = Path(str(path))
    return VideoRecord(str(video if video.is_absolute() else source.parent / video), str(caption), start, end)


def _seconds(value, key: str, source: Path, line: int) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source}:{line} {key}={value!r} must be a number of seconds") from None
    if seconds < 0:
        raise ValueError(f"{source}:{line} {key}={value!r} must not be negative")
    return seconds
