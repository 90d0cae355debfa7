"""UCF-101 and MSR-VTT: which prompts to generate, and which real videos to compare with.

UCF-101 (https://www.crcv.ucf.edu/data/UCF101.php): ``UCF-101/<Class>/v_<Class>_gGG_cCC.avi`` and the split folder
``ucfTrainTestlist/`` (``classInd.txt``, ``trainlist0{1,2,3}.txt``, ``testlist0{1,2,3}.txt``, CRLF line ends). Folder
``HandstandPushups`` holds ``v_HandStandPushups_*`` files, so paths are matched case-insensitively.

MSR-VTT: ``test_videodatainfo.json`` = {"videos": [{"video_id", "split", ...}], "sentences": [{"sen_id",
"video_id", "caption"}]}; the test split is video7010..video9999 with 20 captions each.
"""

import json
import os
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from .generate import Sample
from .videos import list_videos

UCF101_WHERE = (
    "UCF-101 is at https://www.crcv.ucf.edu/data/UCF101.php: UCF101.rar unpacks to UCF-101/<Class>/v_*.avi (pass "
    "that folder as --ucf101-root) and UCF101TrainTestSplits-RecognitionTask.zip to ucfTrainTestlist/ (pass it as "
    "--ucf101-splits)"
)
MSRVTT_WHERE = (
    "MSR-VTT's test_videodatainfo.json ships with the MSR-VTT test release (Microsoft Research, 'MSR-VTT: A Large "
    "Video Description Dataset', 2016; mirrored with the test videos in TestVideo/); pass it as --msrvtt-json"
)
# Generated-video counts used by papers: StyleGAN-V / FusionFrames (Kandinsky Video) 2048, most T2V papers 10,000.
UCF101_PRESETS = {"2048": 2048, "10k": 10_000}

CaptionPolicy = Literal["all", "one"]


def read_lines(path: str | os.PathLike) -> list[str]:
    """Non-empty lines without their line ends (the UCF-101 split files end lines with CRLF)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {UCF101_WHERE}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_class_index(splits_dir: str | os.PathLike) -> list[str]:
    """Class names in label order from ``classInd.txt`` ("1 ApplyEyeMakeup")."""
    entries = [line.split() for line in read_lines(Path(splits_dir) / "classInd.txt")]
    if [int(label) for label, _ in entries] != list(range(1, len(entries) + 1)):
        raise ValueError(f"{splits_dir}/classInd.txt should number classes 1..N in order")
    return [name for _, name in entries]


def read_split(splits_dir: str | os.PathLike, name: str = "trainlist01") -> list[str]:
    """Relative video paths of a split file ("Class/v_..avi [label]")."""
    return [line.split()[0] for line in read_lines(Path(splits_dir) / f"{name}.txt")]


def resolve_videos(root: str | os.PathLike, relative_paths: list[str]) -> list[Path]:
    """Files under ``root`` for split entries, matched case-insensitively (the HandstandPushups quirk)."""
    by_lower = {str(path.relative_to(root)).lower(): path for path in list_videos(root)}
    missing = [rel for rel in relative_paths if rel.lower() not in by_lower]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} videos of the split are not under {root} (first: {missing[:3]}); {UCF101_WHERE}"
        )
    return [by_lower[rel.lower()] for rel in relative_paths]


def ucf101_real_videos(
    root: str | os.PathLike, splits_dir: str | os.PathLike, which: str = "trainlist01"
) -> list[Path]:
    """Real videos in case-sensitive sorted order: a split (``trainlist01``: 9,537) or ``all`` 13,320."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"UCF-101 folder {root} not found; {UCF101_WHERE}")
    if which == "all":
        return list_videos(root)
    return sorted(resolve_videos(root, read_split(splits_dir, which)), key=lambda p: str(p.relative_to(root)))


def load_ucf101_prompts(path: str | os.PathLike | None = None) -> dict[str, str]:
    """Class name -> prompt from a "<Class>\\t<prompt>" file; the default is the list shipped with the package."""
    if path is None:
        text = resources.files("kandinsky_video.evaluation").joinpath("data/ucf101_prompts.txt").read_text()
    elif Path(path).is_file():
        text = Path(path).read_text()
    else:
        raise FileNotFoundError(f"prompt file {path} not found (format: one '<Class>\\t<prompt>' line per class)")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if any("\t" not in line for line in lines):
        raise ValueError(f"prompt file {path or 'ucf101_prompts.txt'}: every line must be '<Class>\\t<prompt>'")
    return dict(line.strip().split("\t", 1) for line in lines)


def class_counts(labels: list[str], classes: list[str], total: int) -> dict[str, int]:
    """Split ``total`` over ``classes`` in proportion to ``labels`` (largest remainders), summing exactly to total."""
    frequency = np.array([labels.count(name) for name in classes], dtype=np.float64)
    if frequency.sum() == 0:
        raise ValueError("no split entry belongs to a class of classInd.txt")
    exact = total * frequency / frequency.sum()
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[index] += 1
    return dict(zip(classes, counts.tolist()))


def ucf101_samples(
    splits_dir: str | os.PathLike,
    total: int,
    prompts: dict[str, str],
    seed: int = 0,
    split: str = "trainlist01",
) -> list[Sample]:
    """``total`` prompts with the class distribution of ``split``; sample i gets seed ``seed + i``."""
    classes = read_class_index(splits_dir)
    canonical = {name.lower(): name for name in classes}
    labels = [canonical.get(rel.split("/")[0].lower(), "") for rel in read_split(splits_dir, split)]
    prompt_of = {name.lower(): prompt for name, prompt in prompts.items()}
    missing = [name for name in classes if name.lower() not in prompt_of]
    if missing:
        raise ValueError(f"the prompt list has no prompt for {missing[:5]} ({len(missing)} classes)")
    samples = []
    for label, (name, count) in enumerate(class_counts(labels, classes, total).items(), start=1):
        for k in range(count):
            samples.append(Sample(f"{label:03d}_{name}_{k:05d}", prompt_of[name.lower()], seed + len(samples)))
    return samples


def msrvtt_captions(json_path: str | os.PathLike, split: str = "test") -> list[dict]:
    """Captions of ``split`` videos as {video_id, sen_id, caption}, by video then sen_id."""
    path = Path(json_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {MSRVTT_WHERE}")
    data = json.loads(path.read_text())
    if not {"videos", "sentences"} <= set(data):
        raise ValueError(f"{path} lacks 'videos' or 'sentences'; is it MSR-VTT's test_videodatainfo.json?")
    order = {video["video_id"]: i for i, video in enumerate(data["videos"]) if video.get("split") == split}
    captions = [s for s in data["sentences"] if s["video_id"] in order]
    captions.sort(key=lambda s: (order[s["video_id"]], s["sen_id"]))
    return [{"video_id": s["video_id"], "sen_id": s["sen_id"], "caption": s["caption"].strip()} for s in captions]


def msrvtt_samples(json_path: str | os.PathLike, policy: CaptionPolicy = "all", seed: int = 0) -> list[Sample]:
    """Every test caption (``all``, ~59,800) or one per test video (``one``, 2,990) drawn with ``seed``."""
    captions = msrvtt_captions(json_path)
    if policy == "one":
        by_video: dict[str, list[dict]] = {}
        for caption in captions:
            by_video.setdefault(caption["video_id"], []).append(caption)
        rng = np.random.default_rng(seed)
        captions = [group[int(rng.integers(len(group)))] for group in by_video.values()]
    elif policy != "all":
        raise ValueError(f"caption policy must be 'all' or 'one', got {policy!r}")
    return [Sample(f"{c['video_id']}_{c['sen_id']}", c["caption"], seed + i) for i, c in enumerate(captions)]
