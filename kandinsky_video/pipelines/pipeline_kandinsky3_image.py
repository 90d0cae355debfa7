"""Kandinsky 3 image modes on the components the video pipeline already holds: text-to-image, image-to-image,
inpainting.

Follows the released Kandinsky 3 code rather than diffusers' Kandinsky3Pipeline / Kandinsky3Img2ImgPipeline where
they differ: the unconditional context is the learned null embedding (diffusers: zeros with a zero mask), padding is
zeroed after the text projection (diffusers: before), and sampling is the released strided 1000-step cosine
schedule with eta and dynamic thresholding at the 0.99 quantile (0.95 for inpainting) — :class:`Kandinsky3Scheduler`.
Image-to-image uses diffusers' strength rule (re-run the last ``strength`` of the schedule). Precision as in the
video pipeline: each model in its own dtype, images, masks, latents and the sampler in fp32 between them.
"""

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, Kandinsky3UNet, VQModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from transformers import PreTrainedTokenizerBase, T5EncoderModel

from ..models.movq_video import MoVQVideo
from ..models.text_encoder import KandinskyTextEncoder, TextProjection
from ..models.unet_inpaint import Kandinsky3ConditionedUNet
from ..sampling.kandinsky3 import Kandinsky3Scheduler
from ..sampling.loop import classifier_free_guidance, denoise_loop, randn_video, schedule_start
from .limits import check_setting

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor


class Kandinsky3ImagePipeline(DiffusionPipeline):
    """``unet`` is a Kandinsky3UNet taking projected context (the video U-Net's ``.spatial``); ``inpaint_unet`` and
    ``inpaint_text_projection`` (own projection and null embedding, as published) are needed only for inpainting."""

    model_cpu_offload_seq = "text_encoder->text_projection->inpaint_text_projection->unet->inpaint_unet->movq"
    _optional_components = ["inpaint_unet", "inpaint_text_projection"]

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        text_encoder: T5EncoderModel,
        text_projection: TextProjection,
        unet: Kandinsky3UNet,
        movq: VQModel,
        scheduler,
        inpaint_unet: Kandinsky3ConditionedUNet | None = None,
        inpaint_text_projection: TextProjection | None = None,
    ):
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, text_projection=text_projection,
                              unet=unet, movq=movq, scheduler=scheduler, inpaint_unet=inpaint_unet,
                              inpaint_text_projection=inpaint_text_projection)
        self.image_processor = VaeImageProcessor(vae_scale_factor=8, do_resize=False)

    @classmethod
    def from_video_pipeline(cls, video, inpaint_unet=None, inpaint_text_projection=None) -> "Kandinsky3ImagePipeline":
        """Share the video pipeline's text encoder, frozen Kandinsky 3.0 U-Net and MoVQ: no second copy in memory.
        The image sampler keeps the video sampler's latent range (1 unless the model says otherwise, e.g. the demo)."""
        movq = video.movq.movq if isinstance(video.movq, MoVQVideo) else video.movq
        scheduler = Kandinsky3Scheduler(sample_range=video.scheduler.config.get("sample_range", 1.0))
        return cls(tokenizer=video.tokenizer, text_encoder=video.text_encoder, text_projection=video.text_projection,
                   unet=video.unet.spatial, movq=movq, scheduler=scheduler, inpaint_unet=inpaint_unet,
                   inpaint_text_projection=inpaint_text_projection)

    def to_tensor(self, image: ImageInput, name: str) -> torch.Tensor:
        """PIL / (H, W, 3) array in [0, 1] / (1, 3, H, W) tensor in [-1, 1] -> (1, 3, H, W) fp32 in [-1, 1]."""
        tensor = image if isinstance(image, torch.Tensor) else self.image_processor.preprocess(image)
        if tensor.ndim != 4 or tensor.shape[1] != 3:
            raise ValueError(f"{name} must be an RGB image, got shape {tuple(tensor.shape)}")
        height, width = tensor.shape[-2:]
        if height % 64 or width % 64:
            raise ValueError(f"{name} is {width}x{height}; resize it to multiples of 64 (e.g. {width // 64 * 64}x{height // 64 * 64})")
        return tensor.to(self._execution_device, torch.float32)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> latents (B, 4, H/8, W/8) fp32, unquantised; the MoVQ runs in its own dtype."""
        return self.movq.encode(pixels.to(self.movq.dtype)).latents.float()

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        image: ImageInput | None = None,
        strength: float = 0.3,
        mask_image: ImageInput | None = None,
        dilate_mask: bool = False,
        height: int = 512,
        width: int = 512,
        num_inference_steps: int = 50,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """Text-to-image; with ``image``, image-to-image at denoising ``strength`` (fraction of the schedule re-run:
        0.3 keeps most of the image, 1.0 ignores it); with ``image`` and ``mask_image`` (1 = repaint), inpainting.
        ``guidance_scale`` is w in (1 + w) cond - w uncond: 3.0 by default, 4.0 for inpainting (released examples)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or any(not p or not p.strip() for p in prompts):
            raise ValueError("prompt must be a non-empty string (or a list of them)")
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else negative_prompt
        inpainting = mask_image is not None
        if inpainting and (image is None or self.inpaint_unet is None):
            raise ValueError("inpainting needs image= and an inpaint_unet (convert kandinsky3_inpainting.pt first)")
        guidance = guidance_scale if guidance_scale is not None else (4.0 if inpainting else 3.0)
        settings = {"image_guidance_scale": guidance, "num_inference_steps": num_inference_steps, "height": height,
                    "width": width, "strength": strength}
        for name, value in settings.items():
            check_setting(name, value, "guidance_scale" if name == "image_guidance_scale" else name)
        projection = self.inpaint_text_projection if inpainting and self.inpaint_text_projection else self.text_projection
        text = KandinskyTextEncoder(self.tokenizer, self.text_encoder, projection).encode(
            prompts, negatives, device=self._execution_device)
        unet = self.inpaint_unet if inpainting else self.unet
        context = torch.cat([text.context, text.negative_context]).to(self._execution_device, unet.dtype)
        mask = torch.cat([text.mask, text.negative_mask]).to(self._execution_device)

        batch, start_step, scheduler = len(prompts), 0, self.scheduler
        pixels = self.to_tensor(image, "image") if image is not None else None
        if pixels is not None:
            height, width = pixels.shape[-2:]
        elif height % 64 or width % 64:
            raise ValueError(f"height and width must be multiples of 64, got {height}x{width}")
        shape = (batch, self.movq.config.latent_channels, 1, height // 8, width // 8)  # images as 1-frame videos
        latents = randn_video(shape, generator, self._execution_device, torch.float32)
        condition = None
        if inpainting:
            repaint = self.to_mask(mask_image, (height, width), dilate_mask)  # (1, 1, H, W), 1 = repaint
            masked = self.encode_image(pixels * (1 - repaint))  # the repaint region set to 0, then encoded
            keep = F.interpolate(1 - repaint, size=masked.shape[-2:], mode="nearest")  # the model's mask: 1 = keep
            condition = torch.cat([keep, masked], dim=1).to(unet.dtype).repeat(2 * batch, 1, 1, 1)
            if isinstance(scheduler, Kandinsky3Scheduler):
                scheduler = Kandinsky3Scheduler.from_config(scheduler.config, dynamic_threshold_quantile=0.95)
        elif pixels is not None:
            start_step, start_time = schedule_start(scheduler, num_inference_steps, strength)
            clean = self.encode_image(pixels).repeat(batch, 1, 1, 1)
            latents = scheduler.add_noise(clean, latents[:, :, 0], start_time.reshape(1).expand(batch))[:, :, None]

        def denoiser(x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            frames = torch.cat([x[:, :, 0], x[:, :, 0]]).to(unet.dtype)  # the U-Net's inputs; guidance in fp32
            if condition is None:
                out = unet(frames, timestep, context, mask).sample
            else:
                out = unet(frames, timestep, context, mask, condition)
            return classifier_free_guidance(*out.float().chunk(2), guidance)[:, :, None]

        with self.progress_bar(total=num_inference_steps - start_step) as bar:
            latents = denoise_loop(scheduler, denoiser, latents, num_inference_steps, generator, bar, start_step=start_step)
        if output_type == "latent":
            images = latents[:, :, 0]
        else:
            decoded = self.movq.decode(latents[:, :, 0].to(self.movq.dtype), force_not_quantize=True).sample
            images = self.image_processor.postprocess(decoded.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def to_mask(self, mask_image: ImageInput, size: tuple[int, int], dilate: bool) -> torch.Tensor:
        """A user mask (1 / white = repaint) -> (1, 1, H, W) fp32 in {0, 1}; optionally dilated as the release's
        example does (three 5x5 box convolutions, then > 0)."""
        if isinstance(mask_image, PIL.Image.Image):
            mask_image = np.asarray(mask_image.convert("L"), dtype=np.float32) / 255.0
        mask = torch.as_tensor(np.asarray(mask_image, dtype=np.float32) if not isinstance(mask_image, torch.Tensor) else mask_image)
        mask = mask.float().reshape(1, 1, *mask.shape[-2:])
        if tuple(mask.shape[-2:]) != size:
            raise ValueError(f"mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is {size[1]}x{size[0]}; use a mask of the image's size")
        mask = (mask > 0.5).float()
        if dilate:
            for _ in range(3):
                mask = (F.conv2d(mask, torch.ones(1, 1, 5, 5), padding=2) > 0).float()
        return mask.to(self._execution_device)
