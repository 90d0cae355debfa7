"""Text-to-video evaluation: FVD (I3D), video IS (C3D), CLIPSIM, the UCF-101 / MSR-VTT protocols, sample generation.

Each metric names the reference protocol it follows and records every knob in its results; see
``docs/evaluation.md`` for which paper used which.
"""
