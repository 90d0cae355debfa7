"""Where training videos and their captions come from: a CSV / JSONL manifest, or a folder of videos with captions.

Manifest columns (CSV header or JSON keys): ``video`` (or ``path``), ``caption`` (or ``text``), and optional
``start`` / ``end`` in seconds, which limit the clip to that part of the video. Relative video paths are relative to
the manifest's folder. A folder source pairs every video with the same-named ``.txt`` file beside it.

Rows with an empty caption are skipped with one warning that lists them (one bad row should not stop a run at its
batch); malformed rows raise ``ValueError`` naming the line. Each record keeps the row it came from (``where``), so
a video that later gives no clip is reported by its row.
"""

import csv
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv")
PATH_COLUMNS = ("video", "path")
CAPTION_COLUMNS = ("caption", "text")
LISTED = 20  # skipped rows named in a warning; the rest are counted

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoRecord:
    """One training video: its file, its caption, and optionally the span (seconds) clips may be cut from."""

    path: str
    caption: str
    start: float | None = None
    end: float | None = None
    where: str = ""  # the manifest row it came from ("train.csv:5"); empty for a folder source (the path says it)

    def label(self) -> str:
        """How messages name the record: ``train.csv:5 (videos/x.mp4)``, or the video path alone."""
        return f"{self.where} ({self.path})" if self.where else self.path


def load_records(source: str | os.PathLike) -> list[VideoRecord]:
    """Records from a manifest (``.csv`` / ``.jsonl``) or a folder of videos with same-named ``.txt`` captions.

    Rows with an empty caption are skipped (a warning lists them; all empty is an error). Video files are not opened
    here: unreadable or missing ones are skipped (and counted) when clips are read.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(
            f"training data {source} does not exist; set data.source to a .csv/.jsonl manifest or a video folder"
        )
    if source.is_dir():
        records, uncaptioned = _scan_folder(source)
    elif source.suffix.lower() == ".csv":
        with open(source, newline="") as file:
            records, uncaptioned = _manifest_records(enumerate(csv.DictReader(file), start=2), source)
    elif source.suffix.lower() == ".jsonl":
        with open(source) as file:
            lines = [(number, line) for number, line in enumerate(file, start=1) if line.strip()]
        rows = [(number, _json_row(line, source, number)) for number, line in lines]
        records, uncaptioned = _manifest_records(rows, source)
    else:
        raise ValueError(f"data.source {source} must be a .csv or .jsonl manifest or a folder of videos")
    if not records and not uncaptioned:
        raise ValueError(f"{source} lists no videos; add rows (video, caption) or videos with .txt captions")
    if uncaptioned:
        _report_uncaptioned(source, uncaptioned, everything=not records)
    return records


def _report_uncaptioned(source: Path, uncaptioned: list[str], everything: bool) -> None:
    """Warn once, listing the rows (or caption files) skipped for an empty caption; refuse if nothing is left."""
    count = len(uncaptioned)
    listed = ", ".join(uncaptioned[:LISTED]) + (f" and {count - LISTED} more" if count > LISTED else "")
    if source.is_dir():
        if everything:
            raise ValueError(f"{source}: every .txt caption is empty ({listed}); write a caption into each")
        videos = "video" if count == 1 else "videos"
        logger.warning("%s: skipped %d %s with an empty .txt caption: %s", source, count, videos, listed)
    else:
        lines = "line" if count == 1 else "lines"
        if everything:
            raise ValueError(f"{source}: every row has an empty caption ({lines} {listed}); fill in the caption column")
        rows = "row" if count == 1 else "rows"
        logger.warning("%s: skipped %d %s with an empty caption: %s %s", source, count, rows, lines, listed)


def _scan_folder(folder: Path) -> tuple[list[VideoRecord], list[str]]:
    """(records, caption files that are empty) for the videos under ``folder``."""
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))
    missing = [str(video) for video in videos if not video.with_suffix(".txt").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} videos in {folder} have no same-named .txt caption, e.g. {missing[:3]}; add captions "
            "or list the videos in a manifest"
        )
    records, uncaptioned = [], []
    for video in videos:
        caption = video.with_suffix(".txt").read_text().strip()
        if caption:
            records.append(VideoRecord(str(video), caption))
        else:
            uncaptioned.append(str(video.with_suffix(".txt").relative_to(folder)))
    return records, uncaptioned


def _manifest_records(rows: Iterable[tuple[int, dict]], source: Path) -> tuple[list[VideoRecord], list[str]]:
    """(records, line numbers of rows with an empty caption) for numbered manifest rows."""
    records, uncaptioned = [], []
    for line, row in rows:
        record = _record(row, source, line)
        if record is None:
            uncaptioned.append(str(line))
        else:
            records.append(record)
    return records, uncaptioned


def _json_row(line: str, source: Path, number: int) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}:{number} is not valid JSON ({error})") from error
    if not isinstance(row, dict):
        raise ValueError(f"{source}:{number} must be a JSON object with video and caption keys")
    return row


def _record(row: dict, source: Path, line: int) -> VideoRecord | None:
    """One manifest row -> VideoRecord, or None if its caption is empty; errors name the file, the line and the
    columns found."""
    path = next((row[key] for key in PATH_COLUMNS if row.get(key)), None)
    if path is None or not any(key in row for key in CAPTION_COLUMNS):
        raise ValueError(
            f"{source}:{line} needs a video path column {PATH_COLUMNS} and a caption column {CAPTION_COLUMNS}; "
            f"found {sorted(key for key in row if key is not None)}"
        )
    # A short CSV row or a JSON null leaves the caption None: empty, like "".
    caption = next((str(row[key]) for key in CAPTION_COLUMNS if row.get(key) is not None and str(row[key]).strip()),
                   None)
    start, end = (_seconds(row.get(key), key, source, line) for key in ("start", "end"))
    if start is not None and end is not None and end <= start:
        raise ValueError(f"{source}:{line} has end={end} <= start={start} seconds")
    if caption is None:
        return None
    video = Path(str(path))
    path = str(video if video.is_absolute() else source.parent / video)
    return VideoRecord(path, caption, start, end, where=f"{source}:{line}")


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
