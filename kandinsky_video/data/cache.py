"""A lazy per-sample cache of what frozen models compute from a clip: MoVQ latents, projected text context.

The keyframe, interpolation and text-to-image trainers run the frozen MoVQ encoder (the first two also T5) on every
clip. With ``data.cache_dir`` set they look each sample up here first and only encode the misses, which are then
written, so from the second epoch on a clip that comes up again costs a file read. Clip starts (and the
interpolation skip) are random, so an entry is keyed by the frames actually sampled, never by the video alone:

- latents: (video path, its size and mtime, the clip's source-frame indices, frame size H x W, model identity);
- text: (caption, model identity).

The model identity (:func:`fingerprint`) covers the frozen modules' classes, configs, weights and the dtype they run
in, so a changed resolution, checkpoint or precision never reads stale entries. Entries are single safetensors files
``<kind>/<key[:2]>/<key>.safetensors``, written under a temporary name and renamed, so processes sharing the folder
never read a half-written entry.
"""

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


LOADER_NOTES = ("_name_or_path", "_commit_hash")  # config entries that say where a module came from, not what it is


def fingerprint(*modules: nn.Module, extra: object = None) -> str:
    """A hash of modules' classes, configs and weights (plus ``extra``, JSON-serialisable): the model identity.

    Not where a module was loaded from (``_name_or_path``): the same weights in another folder share the entries.

    Weights enter through per-tensor sums (plain, squared, position-weighted) computed on their device in float64,
    one transfer in all: cheap for billions of parameters, and any fine-tuning changes them.
    """
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    statistics = []
    for module in modules:
        config = getattr(module, "config", None) or {}
        config = config.to_dict() if hasattr(config, "to_dict") else dict(config)  # transformers' or diffusers'
        config = {key: value for key, value in config.items() if key not in LOADER_NOTES}
        digest.update(f"{type(module).__name__}{json.dumps(config, sort_keys=True, default=str)}".encode())
        for name, tensor in module.state_dict().items():
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            values = tensor.detach().flatten().double()
            position = torch.linspace(1, 2, len(values), dtype=torch.float64, device=values.device)
            statistics.append(torch.stack([values.sum(), values.square().sum(), (values * position).sum()]).cpu())
    if statistics:
        digest.update(torch.cat(statistics).numpy().tobytes())
    return digest.hexdigest()[:32]


class SampleCache:
    """Per-sample tensors in ``folder``, looked up by a key built from JSON-serialisable parts.

    ``hits`` and ``misses`` count lookups (for logs and tests).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        self.hits = self.misses = 0

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def path(self, kind: str, key: str) -> Path:
        return self.folder / kind / key[:2] / f"{key}.safetensors"

    def rows(self, kind: str, keys: list[str], compute) -> list[dict[str, torch.Tensor]]:
        """One tensor dict per key: read from the cache, or ``compute(missing row indices)`` -> dicts (then written).

        Returned tensors are on the CPU, exactly as computed (the files hold them bit for bit).
        """
        found = {}
        for index, key in enumerate(keys):
            path = self.path(kind, key)
            if path.is_file():
                found[index] = load_file(path)
        missing = [index for index in range(len(keys)) if index not in found]
        self.hits, self.misses = self.hits + len(found), self.misses + len(missing)
        if missing:
            for index, tensors in zip(missing, compute(missing)):
                found[index] = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
                self.write(self.path(kind, keys[index]), found[index])
        return [found[index] for index in range(len(keys))]

    @staticmethod
    def write(path: Path, tensors: dict[str, torch.Tensor]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.partial")
        try:
            save_file(tensors, str(partial))
            os.replace(partial, path)  # atomic: another process sees the whole entry or none
        finally:
            partial.unlink(missing_ok=True)
