"""TorchScript weights run code when loaded, so the metric loaders read them only when the user opts in.

A TorchScript file is a program: ``torch.jit.load`` runs its ``__setstate__`` (which can, for example, write any
file through ``torch.from_file``) before a single weight is used. Every other format the loaders accept is plain
data (safetensors, npz, a numpy-only pickle, a ``weights_only`` state dict).
"""

import os
import zipfile
from pathlib import Path

import torch

from ..convert.common import CheckpointMismatchError

ALLOW_FLAG = "--allow-torchscript"
RISK = "TorchScript files run code when loaded: only for files you trust"


def is_torchscript(path: str | os.PathLike) -> bool:
    """What ``torch.jit.save`` writes: a zip with a ``code/`` folder and ``constants.pkl`` (``torch.save`` has
    neither); only the zip's directory is read, nothing is unpickled."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("/constants.pkl") for name in archive.namelist())


def load_torchscript(path: Path, allow: bool, what: str, safe_format: str) -> torch.jit.ScriptModule:
    """``torch.jit.load`` on the CPU when ``allow``; otherwise a refusal naming the risk and both fixes."""
    if not allow:
        raise ValueError(
            f"{path} is a TorchScript file, refused as {what}: TorchScript runs code when it is loaded (its "
            f"__setstate__ is a program that can, for one, write files). Either use {safe_format}, or pass "
            f"{ALLOW_FLAG} (allow_torchscript=True) if you trust this file"
        )
    if not is_torchscript(path):
        raise CheckpointMismatchError(
            f"{path} is not a TorchScript file (torch.jit.save writes a zip with a code/ folder), so {ALLOW_FLAG} "
            f"does not apply to it; as {what} use {safe_format}"
        )
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as error:  # torch reports broken archives and programs as RuntimeError
        raise CheckpointMismatchError(
            f"torch.jit.load cannot read {path} ({str(error).strip().splitlines()[0]}); is it a complete download?"
        ) from error
