"""Training the keyframe U-Net's temporal blocks, the interpolation U-Net and the MoVQ Video decoder on accelerate."""

from .config import TrainConfig, load_config, save_config
from .loop import TrainState, latest_checkpoint, train
from .tasks import DecoderTask, InterpolationTask, KeyframeTask, Task, make_task

__all__ = [
    "DecoderTask",
    "InterpolationTask",
    "KeyframeTask",
    "Task",
    "TrainConfig",
    "TrainState",
    "latest_checkpoint",
    "load_config",
    "make_task",
    "save_config",
    "train",
]
