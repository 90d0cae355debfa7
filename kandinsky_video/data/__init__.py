"""Training data: text-video records, clip sampling with decord, a skip-and-count dataset and its seeded sampler."""

from .cache import SampleCache, fingerprint
from .clips import ClipSpec, UnreadableVideo, choose_frames, read_clip, resize_center_crop
from .dataset import ClipKey, ClipStream, TextVideoDataset, collate_clips
from .records import VideoRecord, load_records

__all__ = [
    "ClipKey",
    "ClipSpec",
    "SampleCache",
    "ClipStream",
    "TextVideoDataset",
    "UnreadableVideo",
    "VideoRecord",
    "choose_frames",
    "collate_clips",
    "fingerprint",
    "load_records",
    "read_clip",
    "resize_center_crop",
]
