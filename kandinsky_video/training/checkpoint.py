"""Training state as data: nested states in safetensors files, never pickles.

Resuming is automatic and a run folder is often someone else's, copied; unpickling a file runs whatever code it
names, so nothing in a checkpoint is ever a pickle. Every piece of training state (optimiser, schedule, EMA, grad
scaler, counters, RNG) is a *state tree*: nested dicts, lists and tuples whose leaves are tensors, ints, floats,
bools, strings or None. One tree is one ``.safetensors`` file: its tensors are the tree's tensors, named by their
JSON Pointer (RFC 6901) in the tree, and its metadata holds the rest of the tree as JSON, each tensor replaced by a
reference. Anything else (a numpy array, a function, an object) is refused when saving, naming where it was.

JSON holds lists, str-keyed objects and scalars only, so the other containers are tagged one-key objects:
``{"tensor": name}``, ``{"tuple": [...]}``, ``{"dict": {...}}`` (str keys) and ``{"int_dict": [[k, v], ...]}``
(int keys: an optimiser's ``state``). Every dict is tagged, so no key of the user's can pass for a tag.
"""

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

TREE_KEY = "kandinsky_video.state_tree"  # the metadata entry holding the JSON tree
SCALARS = (bool, int, float, str, type(None))

# A checkpoint folder: config.yaml, the trainable weights, the replicated state (main process), RNG per process.
TRAINABLE_FILE = "trainable_0.safetensors"  # a plain tensor file: unwrapped-model names -> trainable parameters
STATE_FILE = "training_state.safetensors"


def rng_file(process_index: int) -> str:
    return f"rng_state_{process_index}.safetensors"


def save_tree(tree: Any, path: str | Path) -> None:
    """Write a state tree to one safetensors file (tensors copied to the CPU); refuse anything else in it."""
    tensors = {}

    def encode(node: Any, where: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[where] = node.detach().cpu().contiguous()
            return {"tensor": where}
        if isinstance(node, SCALARS):
            return node
        if isinstance(node, list):
            return [encode(item, f"{where}/{index}") for index, item in enumerate(node)]
        if isinstance(node, tuple):
            return {"tuple": [encode(item, f"{where}/{index}") for index, item in enumerate(node)]}
        if isinstance(node, dict) and all(type(key) is str for key in node):
            return {"dict": {key: encode(value, f"{where}/{escape(key)}") for key, value in node.items()}}
        if isinstance(node, dict) and all(type(key) is int for key in node):
            return {"int_dict": [[key, encode(value, f"{where}/{key}")] for key, value in node.items()]}
        what = "a dict with keys other than all-str or all-int" if isinstance(node, dict) else type(node).__name__
        raise TypeError(f"cannot save {what} at {where or '/'} of a training state: a checkpoint holds only tensors, "
                        f"ints, floats, bools, strings and None in dicts, lists and tuples (no pickles)")

    metadata = {TREE_KEY: json.dumps(encode(tree, ""))}
    save_file(tensors, str(path), metadata=metadata)


def load_tree(path: str | Path) -> Any:
    """Read a state tree written by :func:`save_tree`: tensors on the CPU, nothing ever unpickled."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint is incomplete (copy the whole folder)")
    with safe_open(str(path), framework="pt") as file:
        text = (file.metadata() or {}).get(TREE_KEY)
        if text is None:
            raise ValueError(f"{path} is a safetensors file without a state tree ({TREE_KEY} in its metadata)")
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    used = set()

    def decode(node: Any) -> Any:
        if isinstance(node, SCALARS):
            return node
        if isinstance(node, list):
            return [decode(item) for item in node]
        if isinstance(node, dict) and len(node) == 1:
            (tag, value), = node.items()
            if tag == "tensor" and isinstance(value, str) and value in tensors:
                used.add(value)
                return tensors[value]
            if tag == "tuple" and isinstance(value, list):
                return tuple(decode(item) for item in value)
            if tag == "dict" and isinstance(value, dict):
                return {key: decode(item) for key, item in value.items()}
            if tag == "int_dict" and isinstance(value, list) and all(len(pair) == 2 for pair in value):
                return {int(key): decode(item) for key, item in value}
        raise ValueError(f"{path} holds a malformed state tree near {json.dumps(node)[:200]}")

    tree = decode(json.loads(text))
    if used != set(tensors):
        raise ValueError(f"{path} holds tensors its state tree does not name: {sorted(set(tensors) - used)}")
    return tree


def escape(key: str) -> str:
    """A dict key as a JSON Pointer token (RFC 6901), so tensor names are unique whatever the keys hold."""
    return key.replace("~", "~0").replace("/", "~1")


def rng_state(device: torch.device) -> dict:
    """This process's random streams: torch (CPU, and ``device`` if CUDA), Python ``random``, numpy's global one."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), position, has_gauss, gauss),  # keys: (624,) uint32, as ints
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)  # this process's GPU: the one its loss draws noise on
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def check_not_pickled(folder: Path) -> None:
    """Refuse a checkpoint of the old, pickled layout (accelerate's ``save_state``) by name, without opening it."""
    if (folder / STATE_FILE).is_file():
        return
    pickles = sorted(path.name for path in folder.iterdir() if path.suffix in (".bin", ".pkl", ".pt", ".pth"))
    if pickles:
        raise ValueError(
            f"{folder} is a checkpoint in the old format: its training state ({', '.join(pickles)}) is pickled, and "
            f"Kandinsky Video no longer unpickles checkpoints because a pickle can run any code. Move the folder "
            f"out of {folder.parent} (the newest checkpoint left is resumed, or the run starts afresh); its "
            f"trainable weights, {TRAINABLE_FILE}, are data and safe to read"
        )
