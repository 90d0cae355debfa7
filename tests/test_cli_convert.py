"""`kandinsky-video convert` end to end: published-layout pickles in, model folders out, same outputs."""

from pathlib import Path

import torch
from diffusers import VQModel
from safetensors.torch import load_file

from kandinsky_video.cli import main
from kandinsky_video.models.text_encoder import TextProjection
from kandinsky_video.models.unet_interpolation import KandinskyVideoInterpolationUNet
from kandinsky_video.models.unet_keyframe import KandinskyVideoUNet

DATA = Path(__file__).parent / "data"


def prefixed(tensors: dict, prefix: str) -> dict:
    return {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}


def test_convert_writes_folders_that_reproduce_the_released_outputs(tmp_path, capsys):
    unets = load_file(DATA / "unet_reference.safetensors")
    movq = load_file(DATA / "movq_reference.safetensors")
    generator = torch.Generator().manual_seed(0)
    projections = {"t5.0.weight": torch.randn(8, 16, generator=generator), "t5.1.weight": torch.randn(8, generator=generator),
                   "t5.1.bias": torch.randn(8, generator=generator)}
    null_embedding = torch.randn(8, generator=generator)
    torch.save({"unet": prefixed(unets, "keyframe.state_dict."), "projections": projections, "null_embedding": null_embedding},
               tmp_path / "kandinsky_video.pt")
    torch.save({"unet": prefixed(unets, "interpolation.state_dict."), "null_embedding": unets["interpolation.null_embedding"]},
               tmp_path / "kandinsky_video_interpolation.pt")
    torch.save(prefixed(movq, "state_dict."), tmp_path / "movq.pt")

    code = main([
        "convert", "--keyframe-ckpt", str(tmp_path / "kandinsky_video.pt"),
        "--interpolation-ckpt", str(tmp_path / "kandinsky_video_interpolation.pt"),
        "--movq-ckpt", str(tmp_path / "movq.pt"), "--output", str(tmp_path / "converted"),
        "--groups", "2", "--attention-head-dim", "4",
    ])
    assert code == 0
    out = tmp_path / "converted"
    assert sorted(p.name for p in out.iterdir()) == ["interpolation_unet", "movq", "text_projection", "unet"]
    assert all((out / name / "diffusion_pytorch_model.safetensors").is_file() for name in ("unet", "interpolation_unet", "movq", "text_projection"))
    assert "wrote" in capsys.readouterr().out

    frames = 5
    keyframe = KandinskyVideoUNet.from_pretrained(out / "unet").eval()
    with torch.no_grad():
        sample = keyframe(
            unets["keyframe.x"].unflatten(0, (2, frames)).transpose(1, 2), unets["keyframe.time"][::frames],
            unets["keyframe.context"][::frames], unets["keyframe.mask"][::frames],
        ).sample
    torch.testing.assert_close(sample, unets["keyframe.out"].unflatten(0, (2, frames)).transpose(1, 2), atol=2e-4, rtol=1e-4)

    interpolation = KandinskyVideoInterpolationUNet.from_pretrained(out / "interpolation_unet")
    torch.testing.assert_close(interpolation.null_embedding.data, unets["interpolation.null_embedding"])

    projection = TextProjection.from_pretrained(out / "text_projection")
    torch.testing.assert_close(projection.linear.weight.data, projections["t5.0.weight"])
    torch.testing.assert_close(projection.null_embedding.data, null_embedding)

    image_movq = VQModel.from_pretrained(out / "movq").eval()
    with torch.no_grad():
        decoded = image_movq.decode(movq["latents"], force_not_quantize=True).sample
    torch.testing.assert_close(decoded, movq["decoded"], atol=1e-5, rtol=1e-4)

    # A second conversion into the same folder replaces nothing without --overwrite.
    again = ["convert", "--movq-ckpt", str(tmp_path / "movq.pt"), "--output", str(out)]
    before = (out / "movq" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert main(again) == 2
    assert f"{out} already has movq; pass --overwrite" in capsys.readouterr().err
    assert (out / "movq" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == before
    assert main([*again, "--overwrite"]) == 0


def test_convert_reports_bad_input_clearly(tmp_path, capsys):
    assert main(["convert", "--keyframe-ckpt", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "broken.pt").write_bytes(b"not a pickle")
    assert main(["convert", "--movq-ckpt", str(tmp_path / "broken.pt"), "-o", str(tmp_path / "out")]) == 2
    assert "cannot read" in capsys.readouterr().err
    torch.save({"unet": {}}, tmp_path / "partial.pt")
    assert main(["convert", "--keyframe-ckpt", str(tmp_path / "partial.pt"), "-o", str(tmp_path / "out")]) == 2
    assert "lacks the entries ['projections', 'null_embedding']" in capsys.readouterr().err
    assert main(["convert", "-o", str(tmp_path / "out")]) == 2
    assert "nothing to convert" in capsys.readouterr().err
