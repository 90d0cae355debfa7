"""Strict checkpoint plumbing shared by every converter: safe pickle loading and key/shape checks."""

import os
from collections.abc import Mapping

import torch


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model it is converted into; the message lists every offending key."""


def load_original_checkpoint(path: str | os.PathLike) -> dict:
    """Read a published ``.pt`` pickle without executing code from it (``weights_only=True``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"checkpoint {path!s} does not exist; download the published weights (hub repo ai-forever/KandinskyVideo, "
            "folder weights/) and pass the local file path"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe pickles
        raise CheckpointMismatchError(
            f"cannot read {path!s} as a plain tensor checkpoint ({type(error).__name__}: {error}); "
            "is it a complete download of a published Kandinsky Video file?"
        ) from error


def check_state_dict(
    converted: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    what: str,
    source_names: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`CheckpointMismatchError` naming missing, unexpected and mis-shaped keys; never load partially.

    ``source_names`` maps converted keys back to the checkpoint's own names, so errors name the key in the file.
    """
    source_names = source_names or {}

    def name(key: str) -> str:
        return f"{source_names[key]} (-> {key})" if key in source_names and source_names[key] != key else key

    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(name(key) for key in set(converted) - set(expected))
    mis_shaped = sorted(
        f"{name(key)}: checkpoint {tuple(converted[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(converted) & set(expected)
        if converted[key].shape != expected[key].shape
    )
    if missing or unexpected or mis_shaped:
        parts = [f"{what} does not match the model:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mis_shaped)):
            if keys:
                shown = "\n    ".join(keys[:50]) + (f"\n    ... and {len(keys) - 50} more" if len(keys) > 50 else "")
                parts.append(f"  {title} ({len(keys)}):\n    {shown}")
        raise CheckpointMismatchError("\n".join(parts))


def require_keys(checkpoint: Mapping, keys: tuple[str, ...], path: str | os.PathLike) -> None:
    """Check the top-level entries of a published checkpoint dict (e.g. ``unet``, ``null_embedding``)."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(f"{path!s} holds a {type(checkpoint).__name__}, expected a dict of tensors")
    absent = [key for key in keys if key not in checkpoint]
    if absent:
        raise CheckpointMismatchError(
            f"{path!s} lacks the entries {absent} (has {sorted(checkpoint)}); is it the right published file?"
        )
