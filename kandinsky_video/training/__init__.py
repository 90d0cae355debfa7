"""Training on accelerate: the keyframe U-Net's temporal blocks, the interpolation U-Net, the MoVQ Video decoder,
and (for the demo model, from scratch) a MoVQ and a text-to-image base."""

from .config import TrainConfig, load_config, save_config
from .loop import TrainState, latest_checkpoint, train
from .tasks import (
    DecoderTask,
    InterpolationTask,
    KeyframeTask,
    MovqTask,
    Task,
    TextToImageModel,
    TextToImageTask,
    make_task,
)

__all__ = [
    "DecoderTask",
    "InterpolationTask",
    "KeyframeTask",
    "MovqTask",
    "Task",
    "TextToImageModel",
    "TextToImageTask",
    "TrainConfig",
    "TrainState",
    "latest_checkpoint",
    "load_config",
    "make_task",
    "save_config",
    "train",
]
