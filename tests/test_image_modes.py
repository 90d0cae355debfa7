"""Kandinsky 3 image modes: the released image sampler and inpainting U-Net, and the image pipeline."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kandinsky_video.convert.common import CheckpointMismatchError
from kandinsky_video.convert.unet import convert_inpainting_unet
from kandinsky_video.models.unet_inpaint import Kandinsky3ConditionedUNet
from kandinsky_video.pipelines.pipeline_kandinsky3_image import Kandinsky3ImagePipeline
from kandinsky_video.sampling import Kandinsky3Scheduler, dynamic_threshold
from kandinsky_video.sampling.loop import classifier_free_guidance, denoise_loop, randn_video
from kandinsky_video.testing import tiny_kandinsky3_unet, tiny_pipeline

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def reference():
    return load_file(DATA / "kandinsky3_reference.safetensors")


def toy(x, t, text, extra=0.0):
    """Same denoiser as tests/data/make_kandinsky3_reference.py."""
    return 0.8 * torch.tanh(x) + 1e-4 * float(t) + 0.3 * text + 0.2 * extra


def test_image_sampler_reproduces_the_released_code(reference):
    context, mask, null = reference["sampler.context"], reference["sampler.mask"], reference["sampler.null_embedding"]
    text, null_text = ((context * mask[..., None]).sum() / mask.sum()).item(), null.sum().item()
    keep, masked = reference["sampler.keep"], reference["sampler.masked_latent"]
    extra = torch.cat([keep, masked], 1).mean(1, keepdim=True)
    for weight, condition, expected in [(3.0, 0.0, "sampler.image"), (4.0, extra, "sampler.inpainted")]:
        def denoiser(x, t):
            cond, uncond = toy(x[:, :, 0], t, text, condition), toy(x[:, :, 0], t, null_text, condition)
            return classifier_free_guidance(cond, uncond, weight)[:, :, None]

        generator = torch.Generator().manual_seed(0)
        latents = randn_video((1, 4, 1, 8, 8), generator, "cpu", torch.float32)
        out = denoise_loop(Kandinsky3Scheduler(), denoiser, latents, 10, generator)
        torch.testing.assert_close(out[:, :, 0], reference[expected], atol=1e-5, rtol=1e-5)


def test_inpainting_unet_reproduces_the_released_code(reference):
    original = {k.removeprefix("inpaint.state_dict."): v for k, v in reference.items() if k.startswith("inpaint.state_dict.")}
    model = convert_inpainting_unet(original, groups=2, attention_head_dim=4).eval()
    assert model.config.condition_channels == 5
    x = reference["inpaint.x"]
    with torch.no_grad():
        out = model(x[:, :4], reference["inpaint.time"], reference["inpaint.context"], reference["inpaint.mask"], x[:, 4:])
    torch.testing.assert_close(out, reference["inpaint.out"], atol=1e-4, rtol=1e-4)
    del original["in_layer.bias"]
    with pytest.raises(CheckpointMismatchError, match="spatial.conv_in.bias"):
        convert_inpainting_unet(original, groups=2, attention_head_dim=4)


def test_conditioned_unet_starts_as_the_image_model(t2i_unet, text):
    model = Kandinsky3ConditionedUNet.from_kandinsky3(t2i_unet).eval()
    x, condition = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 300, *text, condition), t2i_unet(x, 300, *text).sample)
    with pytest.raises(ValueError, match="condition must be"):
        model(x, 300, *text, condition[:, :4])


class CopyKeptLatents(Kandinsky3ConditionedUNet):
    """An oracle inpainting model: predicts the noise that makes x0 = keep * masked-image latent, from the condition
    channels [keep (1), masked-image latent (4)] — it shows whether the pipeline passes the released conventions."""

    alphas_cumprod = Kandinsky3Scheduler().alphas_cumprod

    def forward(self, sample, timestep, encoder_hidden_states, encoder_attention_mask, condition):
        abar = self.alphas_cumprod[int(timestep)]
        return (sample - abar.sqrt() * condition[:, :1] * condition[:, 1:]) / (1 - abar).sqrt()


@pytest.fixture(scope="module")
def image_pipe():
    video = tiny_pipeline()
    oracle = CopyKeptLatents(**{k: v for k, v in Kandinsky3ConditionedUNet.from_kandinsky3(tiny_kandinsky3_unet()).config.items() if not k.startswith("_")})
    pipe = Kandinsky3ImagePipeline.from_video_pipeline(video, inpaint_unet=oracle)
    pipe.set_progress_bar_config(disable=True)
    return pipe, video


def test_image_pipeline_shares_the_video_models(image_pipe):
    pipe, video = image_pipe
    assert pipe.unet is video.unet.spatial and pipe.movq is video.movq.movq and pipe.text_encoder is video.text_encoder


def test_text_to_image_and_image_to_image(image_pipe):
    pipe, _ = image_pipe
    run = lambda output_type="np", **kw: pipe("a red circle", num_inference_steps=4, output_type=output_type,  # noqa: E731
                                              generator=torch.Generator().manual_seed(0), **kw).images
    image = run(height=64, width=64)
    assert image.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(image, run(height=64, width=64))
    # Judged in latent space: the tiny random MoVQ is no autoencoder, so pixels would not tell.
    photo = np.random.default_rng(0).uniform(0.2, 0.8, (64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        clean = pipe.movq.encode(pipe.to_tensor(photo, "image")).latents
        light, medium, full = (run(image=photo, strength=s, output_type="latent") for s in (0.25, 0.5, 1.0))
        distance = [(latents - clean).abs().mean() for latents in (light, medium, full)]
        assert distance[0] < distance[1] < distance[2]  # the lower the strength, the more of the input is kept
        decoded = pipe.movq.decode(full, force_not_quantize=True).sample
    np.testing.assert_allclose(pipe.image_processor.postprocess(decoded, output_type="np"), image, atol=1e-3)  # 1.0 ignores it
    with pytest.raises(ValueError, match="strength"):
        run(image=image[0], strength=0.0)
    with pytest.raises(ValueError, match="multiples of 64"):
        run(image=np.zeros((60, 64, 3), np.float32))


def test_inpainting_keeps_the_unmasked_region(image_pipe):
    pipe, _ = image_pipe
    image = np.random.default_rng(3).uniform(0.2, 0.8, (64, 64, 3)).astype(np.float32)
    repaint = np.zeros((64, 64), np.float32)
    repaint[:, 32:] = 1  # the right half is repainted (user mask: 1 = repaint)
    out = pipe("a red circle", image=image, mask_image=repaint, num_inference_steps=4, output_type="latent",
               generator=torch.Generator().manual_seed(0)).images  # (1, 4, 8, 8)
    with torch.no_grad():
        # The released masked image: the repaint region set to 0 in [-1, 1] pixels (mid-grey), then encoded.
        kept_half = pipe.movq.encode(pipe.to_tensor(image, "image") * torch.from_numpy(1 - repaint)).latents
    keep = torch.ones_like(kept_half[:, :1])
    keep[..., 4:] = 0
    expected = dynamic_threshold(keep * kept_half, 0.95)  # the inpainting sampler thresholds at the 0.95 quantile
    # Latent columns 0-2 see only kept pixels; 5-7 only repainted ones (judged in latents: the tiny MoVQ is random).
    torch.testing.assert_close(out[..., :3], expected[..., :3], atol=1e-2, rtol=1e-2)
    assert out[..., 5:].abs().max() < 1e-3 < kept_half[..., 5:].abs().max()
    with pytest.raises(ValueError, match="mask is 32x64"):
        pipe("a", image=image, mask_image=repaint[:, :32], num_inference_steps=2)


def test_mask_dilation(image_pipe):
    pipe, _ = image_pipe
    mask = np.zeros((64, 64), np.float32)
    mask[32, 32] = 1
    dilated = pipe.to_mask(mask, (64, 64), dilate=True)[0, 0]
    assert dilated.sum() == 13 * 13 and dilated[32, 32] == 1  # three 5x5 boxes: radius 6
    assert pipe.to_mask(mask, (64, 64), dilate=False).sum() == 1
