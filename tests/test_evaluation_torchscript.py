"""TorchScript I3D/C3D files run code when loaded: refused without --allow-torchscript, still usable with it."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from kandinsky_video.cli import main
from kandinsky_video.convert.common import CheckpointMismatchError
from kandinsky_video.evaluation.c3d import load_c3d
from kandinsky_video.evaluation.i3d_weights import load_i3d
from kandinsky_video.evaluation.inception_score import classifier_probabilities
from kandinsky_video.evaluation.videos import write_video


class WritesAFile(nn.Module):
    """TorchScript whose ``__setstate__`` creates ``marker`` (torch.from_file with shared=True) when loaded."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.blob = torch.zeros(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> list[str]:
        return [self.marker]

    @torch.jit.export
    def __setstate__(self, state: list[str]) -> None:
        self.marker = state[0]
        self.blob = torch.from_file(state[0], True, 8, dtype=torch.uint8).fill_(65).float()  # writes 'AAAAAAAA'


class PortI3D(nn.Module):
    """Stands in for StyleGAN-V's i3d_torchscript.pt: its call signature, (B, 400) features of (B, 3, T, H, W)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 400)

    def forward(
        self, video: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False
    ) -> torch.Tensor:
        assert not rescale and not resize and return_features, "the wrapper must switch off its preprocessing"
        return self.head(video.mean(dim=(2, 3, 4)))


class PortC3D(nn.Module):
    """Stands in for StyleGAN-V's c3d_ucf101.pt: uint8 (B, 3, T, H, W) -> (B, 101) probabilities."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 101)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(clips.float().mean(dim=(2, 3, 4)) / 255.0).softmax(-1)


def save_script(module: nn.Module, path) -> None:
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(module), str(path))


LOADERS = {
    "i3d": (lambda path, allow: load_i3d(path, allow_torchscript=allow), "kandinsky-video eval fetch-i3d"),
    "c3d": (lambda path, allow: load_c3d(path, allow_torchscript=allow), "conv3d_deepnetA_ucf.npz"),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("name", ["weights.pt", "renamed.ckpt"])
def test_torchscript_is_refused_without_the_flag_and_its_code_never_runs(tmp_path, loader, name):
    load, safe_format = LOADERS[loader]
    marker = tmp_path / "marker"
    save_script(WritesAFile(str(marker)), tmp_path / name)
    with pytest.raises(ValueError) as error:
        load(tmp_path / name, False)
    message = str(error.value)
    for part in ("is a TorchScript file", "runs code when it is loaded", "--allow-torchscript", safe_format):
        assert part in message
    assert not marker.exists()

    with pytest.raises(CheckpointMismatchError, match="torch.jit.load cannot read"):
        load(tmp_path / name, True)  # with the flag the file is loaded, and its code runs: the marker proves it
    assert marker.read_bytes() == b"AAAAAAAA"


def test_torchscript_i3d_loads_with_the_flag_behind_our_contract(tmp_path):
    save_script(PortI3D(), tmp_path / "i3d_torchscript.pt")
    i3d = load_i3d(tmp_path / "i3d_torchscript.pt", allow_torchscript=True)
    video = torch.rand(2, 3, 16, 224, 224) * 2 - 1
    expected = i3d.module.head(video.mean(dim=(2, 3, 4)))
    with torch.no_grad():
        torch.testing.assert_close(i3d(video), expected)


def test_torchscript_c3d_loads_with_the_flag_and_gets_channels_first_clips(tmp_path):
    save_script(PortC3D(), tmp_path / "c3d_ucf101.pt")
    c3d = load_c3d(tmp_path / "c3d_ucf101.pt", allow_torchscript=True)
    clips = [np.random.default_rng(i).integers(0, 256, (16, 40, 40, 3), dtype=np.uint8) for i in range(3)]
    mean_rgb = torch.from_numpy(np.stack(clips)).float().mean(dim=(1, 2, 3)) / 255.0  # (B, 3)
    expected = c3d.module.head(mean_rgb).softmax(-1).double().detach().numpy()
    np.testing.assert_allclose(classifier_probabilities(c3d, clips, batch_size=2), expected, rtol=1e-5)


def test_a_c3d_file_that_is_neither_npz_nor_torchscript_gets_a_message(tmp_path):
    path = tmp_path / "c3d_state_dict.pt"
    torch.save({"conv1a.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointMismatchError, match="is not a TorchScript file.*conv3d_deepnetA_ucf.npz"):
        load_c3d(path, allow_torchscript=True)
    with pytest.raises(CheckpointMismatchError, match="neither an npz nor a TorchScript file"):
        load_c3d(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "mean2.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointMismatchError, match="junk.npz as an npz of plain arrays"):
        load_c3d(tmp_path / "junk.npz", tmp_path / "mean2.npz")


def test_the_flag_does_not_turn_a_state_dict_into_torchscript(tmp_path):
    """With --allow-torchscript a state dict is still read as one (weights_only): the flag permits, not demands."""
    torch.save({"head.weight": torch.zeros(400, 3)}, tmp_path / "not_i3d.pt")
    with pytest.raises(CheckpointMismatchError, match="lack Conv3d_1a_7x7"):
        load_i3d(tmp_path / "not_i3d.pt", allow_torchscript=True)


def test_eval_cli_refuses_torchscript_unless_allowed_and_records_the_choice(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for folder in ("real", "fake"):
        for i in range(3):
            write_video(tmp_path / folder / f"{i}.mp4", rng.integers(0, 256, (16, 24, 24, 3), dtype=np.uint8))
    save_script(WritesAFile(str(tmp_path / "marker")), tmp_path / "evil.pt")
    save_script(PortI3D(), tmp_path / "i3d_torchscript.pt")
    command = ["eval", "folders", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
               "--fvd-protocol", "tats",  # its SVD square root: seconds faster than scipy's on these rank-2 matrices
               "--resolution", "24", "--cache-dir", str(tmp_path / "cache"),
               "--output", str(tmp_path / "out")]  # fmt: skip

    assert main([*command, "--i3d-weights", str(tmp_path / "evil.pt")]) == 2
    assert "is a TorchScript file, refused as I3D weights" in capsys.readouterr().err
    assert not (tmp_path / "marker").exists() and not (tmp_path / "out").exists()
    assert main([*command, "--i3d-weights", str(tmp_path / "i3d_torchscript.pt"), "--allow-torchscript"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["options"]["allow_torchscript"] is True and results["metrics"]["fvd"]["num_fake"] == 3
