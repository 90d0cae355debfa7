"""Pipelines: text-to-video, and writers for their output."""

from .export import write_video
from .pipeline_kandinsky_video import PRESETS, KandinskyVideoPipeline, KandinskyVideoPipelineOutput

__all__ = ["PRESETS", "KandinskyVideoPipeline", "KandinskyVideoPipelineOutput", "write_video"]
