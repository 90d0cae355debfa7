"""C3D v1.0 fine-tuned on UCF-101: the video Inception Score classifier, with TGANv2's preprocessing.

Adapted from pfnet-research/tgan2 ``tgan2/models/c3d/c3d_ucf101.py`` (Chainer). Every IS classifier here maps uint8
clips (B, 16, H, W, 3) RGB to (B, 101) class probabilities. Weights are user-supplied (no offline copy exists):

- TGANv2: ``conv3d_deepnetA_ucf.npz`` (Chainer names ``conv1a/W`` ...) plus the mean clip ``mean2.npz``;
- StyleGAN-V: ``c3d_ucf101.pt``, a TorchScript export of the same network that takes uint8 (B, 3, T, H, W); read
  only with ``allow_torchscript`` (``--allow-torchscript``), since loading TorchScript runs code from the file.
"""

import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..convert.common import CheckpointMismatchError, check_state_dict
from .torchscript import ALLOW_FLAG, is_torchscript, load_torchscript

NUM_FRAMES, CROP = 16, 112
CONV_LAYERS = ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
CONV_WIDTHS = (64, 128, 256, 256, 512, 512, 512, 512)
POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2), "conv5b": (2, 2, 2)}

WHERE_TO_GET = (
    "C3D weights are not redistributable here: pass --c3d-weights with TGANv2's conv3d_deepnetA_ucf.npz "
    "(pfnet-research/tgan2, converted from the C3D caffemodel c3d_ucf101_finetune_whole_iter_20000) together with "
    "--c3d-mean mean2.npz (the C3D mean clip, from the same repository), or with StyleGAN-V's c3d_ucf101.pt "
    f"(with {ALLOW_FLAG}: TorchScript runs code when loaded; https://www.dropbox.com/s/jxpu7avzdc9n97q/c3d_ucf101.pt)"
)
SAFE_FORMAT = (
    "TGANv2's conv3d_deepnetA_ucf.npz with --c3d-mean mean2.npz (plain arrays, the same C3D; pfnet-research/tgan2)"
)


class C3D(nn.Module):
    """Conv3d x8 + fc x3 on preprocessed input (B, 3, 16, 112, 112) BGR minus the mean clip -> fc8 logits (B, 101).

    Chainer's max pooling covers the border (``cover_all``), i.e. ceil mode: pool5 turns 7x7 into 4x4, hence fc6's
    512*4*4 inputs. ``width_divisor`` > 1 gives a tiny test model.
    """

    def __init__(self, num_classes: int = 101, width_divisor: int = 1):
        super().__init__()
        widths = [w // width_divisor for w in CONV_WIDTHS]
        for name, in_channels, out_channels in zip(CONV_LAYERS, [3, *widths[:-1]], widths):
            self.add_module(name, nn.Conv3d(in_channels, out_channels, 3, padding=1))
        self.fc6 = nn.Linear(widths[-1] * 4 * 4, 4096 // width_divisor)
        self.fc7 = nn.Linear(4096 // width_divisor, 4096 // width_divisor)
        self.fc8 = nn.Linear(4096 // width_divisor, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in CONV_LAYERS:
            x = F.relu(getattr(self, name)(x))
            if name in POOL_AFTER:
                x = F.max_pool3d(x, POOL_AFTER[name], ceil_mode=True)
        x = x.flatten(1)  # (B, 512 * 1 * 4 * 4)
        return self.fc8(F.relu(self.fc7(F.relu(self.fc6(x)))))  # dropout is off at evaluation


def tgan2_preprocess(video: torch.Tensor, mean_crop: torch.Tensor) -> torch.Tensor:
    """RGB (B, 3, 16, H, W) in [-1, 1] -> C3D input: BGR x128 (+128), bilinear (aligned corners) to 112, minus mean.

    TGANv2 computes 128*(x+1) - mean2[:, :, 8:120, 8:120], i.e. 0..256 rather than 0..255 before the mean.
    """
    batch, _, num_frames = video.shape[:3]
    frames = 128.0 * (video.flip(1) + 1.0)  # RGB -> BGR
    frames = frames.transpose(1, 2).flatten(0, 1)  # (B*T, 3, H, W)
    frames = F.interpolate(frames, size=(CROP, CROP), mode="bilinear", align_corners=True)
    frames = frames.reshape(batch, num_frames, 3, CROP, CROP).transpose(1, 2)  # (B, 3, T, 112, 112)
    return frames - mean_crop


class TGANv2C3D(nn.Module):
    """C3D with TGANv2's preprocessing: uint8 (B, 16, H, W, 3) -> probabilities (B, 101)."""

    def __init__(self, c3d: C3D, mean_clip: np.ndarray | torch.Tensor):
        super().__init__()
        mean_clip = torch.as_tensor(np.asarray(mean_clip), dtype=torch.float32)
        if mean_clip.ndim == 5 and mean_clip.shape[0] == 1:
            mean_clip = mean_clip[0]
        if mean_clip.ndim != 4 or mean_clip.shape[:2] != (3, NUM_FRAMES) or min(mean_clip.shape[2:]) < 8 + CROP:
            raise ValueError(
                f"C3D mean clip should be (3, 16, >=120, >=120) like mean2.npz, got {tuple(mean_clip.shape)}"
            )
        self.c3d = c3d
        self.register_buffer("mean_crop", mean_clip[:, :, 8 : 8 + CROP, 8 : 8 + CROP].contiguous())

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        video = clips.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # (B, 3, T, H, W) in [-1, 1]
        return self.c3d(tgan2_preprocess(video, self.mean_crop)).softmax(dim=-1)


class TorchScriptC3D(nn.Module):
    """StyleGAN-V's ``c3d_ucf101.pt`` behind our contract; it does its own preprocessing on uint8 (B, 3, T, H, W)."""

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.module = module

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        probabilities = self.module(clips.permute(0, 4, 1, 2, 3).contiguous())
        if not torch.allclose(probabilities.sum(-1), torch.ones(len(probabilities)), atol=1e-3):
            raise ValueError("the TorchScript C3D returned scores that are not probabilities; is it c3d_ucf101.pt?")
        return probabilities


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an npz file; numpy's ``allow_pickle=False`` refuses object arrays instead of unpickling them."""
    try:
        with np.load(path) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile) as error:  # not an npz, or pickles inside
        message = f"cannot read {path} as an npz of plain arrays ({error}); {WHERE_TO_GET}"
        raise CheckpointMismatchError(message) from error


def c3d_state_dict_from_npz(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Chainer ``save_npz`` names (``conv1a/W``, ``fc8/b``; optional ``predictor/`` prefix) -> C3D names."""
    arrays = {name.removeprefix("predictor/"): array for name, array in read_npz(path).items()}
    suffixes = {"W": "weight", "b": "bias"}
    state_dict = {}
    for name, array in arrays.items():
        layer, _, leaf = name.rpartition("/")
        state_dict[f"{layer}.{suffixes.get(leaf, leaf)}"] = torch.from_numpy(np.asarray(array, dtype=np.float32))
    return state_dict


def load_c3d(
    weights: str | os.PathLike | None, mean: str | os.PathLike | None = None, allow_torchscript: bool = False
) -> nn.Module:
    """An IS classifier from TGANv2's npz (+ mean2.npz) or, only with ``allow_torchscript`` (it runs code from the
    file), StyleGAN-V's TorchScript; in eval mode."""
    if weights is None or not Path(weights).is_file():
        raise FileNotFoundError(f"C3D weights {weights} not found; {WHERE_TO_GET}")
    weights = Path(weights)
    if is_torchscript(weights) or (allow_torchscript and weights.suffix != ".npz"):
        return TorchScriptC3D(load_torchscript(weights, allow_torchscript, "C3D weights", SAFE_FORMAT)).eval()
    if weights.suffix != ".npz":
        raise CheckpointMismatchError(f"{weights} is neither an npz nor a TorchScript file; {WHERE_TO_GET}")
    if mean is None or not Path(mean).is_file():
        raise FileNotFoundError(f"the C3D mean clip {mean} not found (TGANv2's npz needs --c3d-mean); {WHERE_TO_GET}")
    state_dict = c3d_state_dict_from_npz(weights)
    if "conv1a.weight" not in state_dict or "fc8.weight" not in state_dict:
        raise CheckpointMismatchError(f"{weights} has no conv1a/W or fc8/W; is it conv3d_deepnetA_ucf.npz?")
    c3d = C3D(num_classes=state_dict["fc8.weight"].shape[0], width_divisor=64 // state_dict["conv1a.weight"].shape[0])
    check_state_dict(state_dict, c3d.state_dict(), f"C3D weights {weights}")
    c3d.load_state_dict(state_dict)
    mean_arrays = read_npz(mean)
    if "mean" not in mean_arrays:
        raise CheckpointMismatchError(f"{mean} has no 'mean' array (has {sorted(mean_arrays)}); is it mean2.npz?")
    return TGANv2C3D(c3d, mean_arrays["mean"]).eval()
