"""KandinskyVideoPipeline: prompt -> keyframes -> interpolation passes -> chunked decoding."""

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline, Kandinsky3UNet, VQModel
from diffusers.utils import BaseOutput
from diffusers.video_processor import VideoProcessor
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5EncoderModel

from ..models.frames import fold_frames, unfold_frames
from ..models.movq_video import MoVQVideo
from ..models.text_encoder import KandinskyTextEncoder, TextProjection
from ..models.unet_interpolation import KandinskyVideoInterpolationUNet, interleave_keyframes, split_groups
from ..models.unet_keyframe import TEMPORAL_CONFIG_NAME, TEMPORAL_WEIGHTS_NAME, KandinskyVideoUNet
from ..sampling.loop import classifier_free_guidance, denoise_loop, randn_video
from ..sampling.released import KandinskyVideoScheduler
from .limits import check_setting

logger = logging.getLogger(__name__)

PRESETS = {"low": 0, "medium": 1, "high": 2}  # interpolation passes, as released (15 -> 57 -> 225 frames, k=3)
SOURCE_FPS = 24  # keyframe positions count frames of ~24 fps source video
RELEASED_SKIPS = (3, 1)  # skip conditioning of the two released passes (k=3)
OUTPUT_TYPES = ("np", "pil", "pt", "latent")


@dataclass
class KandinskyVideoPipelineOutput(BaseOutput):
    """frames: np (B, T, H, W, 3) in [0, 1], list of lists of PIL images, torch (B, T, 3, H, W), or latents."""

    frames: np.ndarray | list | torch.Tensor
    fps: float


class KandinskyVideoPipeline(DiffusionPipeline):
    """Text-to-video with the Kandinsky Video keyframe U-Net, interpolation U-Net and MoVQ (Video) decoder.

    Schedulers default to the released sampler (:class:`KandinskyVideoScheduler`: epsilon for keyframes, v for
    interpolation); any diffusers scheduler can replace either. Guidance follows the release:
    (1 + w) * cond - w * uncond, with the null-embedding unconditional context for keyframes and zeroed keyframes
    for interpolation.

    Precision: each model runs in its own dtype (``from_pretrained(..., dtype=torch.bfloat16)``); noise, latents,
    sampler, guidance and text context stay fp32 between models, so a bf16 run draws the fp32 run's noise.
    """

    model_cpu_offload_seq = "text_encoder->text_projection->unet->interpolation_unet->movq"
    _optional_components = ["interpolation_unet", "interpolation_scheduler"]

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        text_encoder: T5EncoderModel,
        text_projection: TextProjection,
        unet: KandinskyVideoUNet,
        movq: MoVQVideo | VQModel,
        scheduler,
        interpolation_unet: KandinskyVideoInterpolationUNet | None = None,
        interpolation_scheduler=None,
    ):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, text_projection=text_projection, unet=unet, movq=movq,
            scheduler=scheduler, interpolation_unet=interpolation_unet, interpolation_scheduler=interpolation_scheduler,
        )
        self.video_processor = VideoProcessor(do_resize=False, vae_scale_factor=8)

    # ---- assembly -----------------------------------------------------------------------------------------------

    @classmethod
    def from_kandinsky3(
        cls,
        kandinsky3: str | os.PathLike,
        unet: str | os.PathLike | None = None,
        interpolation_unet: str | os.PathLike | None = None,
        movq: str | os.PathLike | None = None,
        text_projection: str | os.PathLike | None = None,
        dtype: torch.dtype | None = None,
    ) -> "KandinskyVideoPipeline":
        """Assemble from a diffusers Kandinsky 3.0 folder or hub id plus our weights.

        ``unet``: a KandinskyVideoUNet folder, or a temporal-only folder written by ``save_temporal`` (loaded onto
        the Kandinsky 3.0 U-Net); without it the temporal layers are fresh (identity: every frame is the image
        model's). ``text_projection`` defaults to the Kandinsky 3.0 U-Net's; ``movq`` to its MoVQ.
        """
        base = _Kandinsky3UNet.from_pretrained(kandinsky3, subfolder="unet", dtype=dtype)
        if unet is not None and (Path(unet) / TEMPORAL_WEIGHTS_NAME).is_file():
            video_unet = KandinskyVideoUNet.from_kandinsky3(base, **_temporal_config(unet)).load_temporal(unet)
        elif unet is not None:
            video_unet = KandinskyVideoUNet.from_pretrained(unet, dtype=dtype)
        else:
            logger.warning("no temporal weights given: the keyframe U-Net starts as the image model on every frame")
            video_unet = KandinskyVideoUNet.from_kandinsky3(base)
        projection = (
            TextProjection.from_pretrained(text_projection, dtype=dtype) if text_projection
            else TextProjection.from_kandinsky3_unet(base)
        )
        return cls(
            tokenizer=AutoTokenizer.from_pretrained(kandinsky3, subfolder="tokenizer"),
            text_encoder=T5EncoderModel.from_pretrained(kandinsky3, subfolder="text_encoder", dtype=dtype),
            text_projection=projection,
            unet=video_unet,
            movq=load_movq(movq, dtype) if movq else VQModel.from_pretrained(kandinsky3, subfolder="movq", dtype=dtype),
            scheduler=KandinskyVideoScheduler(),
            interpolation_unet=(
                KandinskyVideoInterpolationUNet.from_pretrained(interpolation_unet, dtype=dtype)
                if interpolation_unet else None
            ),
            interpolation_scheduler=KandinskyVideoScheduler(prediction_type="v_prediction") if interpolation_unet else None,
        )

    # ---- the stages ---------------------------------------------------------------------------------------------

    def check_inputs(self, prompts, negative_prompts, preset, output_type, **settings) -> None:
        """``settings``: the numeric call arguments by name, each checked against :data:`~.limits.LIMITS` (finite,
        in range: NaN guidance used to give a black video)."""
        for name, value in settings.items():
            if value is not None:  # interpolation_steps=None: the keyframe steps
                check_setting(name, value)
        height, width, num_keyframes = settings["height"], settings["width"], settings["num_keyframes"]
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("prompt must be a non-empty string (or a list of them)")
        if negative_prompts is not None and len(negative_prompts) != len(prompts):
            raise ValueError(f"{len(negative_prompts)} negative prompts for {len(prompts)} prompts")
        factor = 8 * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if height % factor or width % factor:
            raise ValueError(f"height and width must be positive multiples of {factor}, got {height}x{width}")
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        if PRESETS[preset] and self.interpolation_unet is None:
            raise ValueError(f"preset {preset!r} interpolates, but this pipeline has no interpolation_unet; use 'low'")
        if num_keyframes < (2 if PRESETS[preset] else 1):
            raise ValueError(f"num_keyframes={num_keyframes} is too few for preset {preset!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r}; choose one of {OUTPUT_TYPES}")

    def encode_prompt(self, prompts: list[str], negative_prompts: list[str] | None, videos_per_prompt: int):
        """Context and unconditional context (B*videos_per_prompt, L, D) fp32 with masks, the released way."""
        encoder = KandinskyTextEncoder(self.tokenizer, self.text_encoder, self.text_projection)
        text = encoder.encode(prompts, negative_prompts, device=self._execution_device)
        return [t.repeat_interleave(videos_per_prompt, 0)
                for t in (text.context, text.mask, text.negative_context, text.negative_mask)]

    def generate_keyframes(self, text, num_keyframes, height, width, steps, guidance_scale, generator, latents,
                           callback) -> torch.Tensor:
        """Stage 1: (B, 4, N, H/8, W/8) keyframe latents, fp32."""
        context, mask, uncond_context, uncond_mask = text
        shape = (context.shape[0], self.unet.config.in_channels, num_keyframes, height // 8, width // 8)
        if latents is None:
            latents = randn_video(shape, generator, self._execution_device, torch.float32)
        elif latents.shape != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        dtype = self.unet.dtype  # the U-Net's inputs only; its output, guidance and the sampler are fp32
        both_context, both_mask = torch.cat([context, uncond_context]).to(dtype), torch.cat([mask, uncond_mask])

        def denoiser(x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            prediction = self.unet(torch.cat([x, x]).to(dtype), timestep, both_context, both_mask).sample
            cond, uncond = prediction.float().chunk(2)
            return classifier_free_guidance(cond, uncond, guidance_scale)

        with self.progress_bar(total=steps) as bar:
            bar.set_description("keyframes")
            return denoise_loop(self.scheduler, denoiser, latents.to(self._execution_device, torch.float32), steps,
                                generator, bar, callback and (lambda i, t, x: callback(self, "keyframes", i, t, x)))

    def interpolate(self, keyframes, steps, guidance_scale, skip, generator, callback, stage) -> torch.Tensor:
        """One pass: (B, C, N, h, w) -> (B, C, (k+1)(N-1)+1, h, w) fp32; keyframes stay, k frames fill each gap."""
        model, keyframes = self.interpolation_unet, keyframes.float()
        k, dtype = model.config.frames_between, model.dtype  # dtype: the U-Net's inputs only, as for keyframes
        batch, channels, frames, height, width = keyframes.shape
        shape = (batch, k * channels, frames - 1, height, width)
        latents = randn_video(shape, generator, keyframes.device, torch.float32)
        guided = guidance_scale != 0  # w = 0 is the conditional model alone: no unconditional pass
        model_keyframes = torch.cat([keyframes, torch.zeros_like(keyframes)]) if guided else keyframes  # zeroed: uncond
        model_keyframes = model_keyframes.to(dtype)
        skip = torch.full((len(model_keyframes),), skip, device=keyframes.device)

        def denoiser(x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            if not guided:
                return model(x.to(dtype), model_keyframes, timestep, skip).sample.float()
            cond, uncond = model(torch.cat([x, x]).to(dtype), model_keyframes, timestep, skip).sample.float().chunk(2)
            return classifier_free_guidance(cond, uncond, guidance_scale)

        with self.progress_bar(total=steps) as bar:
            bar.set_description(stage)
            between = denoise_loop(self.interpolation_scheduler, denoiser, latents, steps, generator, bar,
                                   callback and (lambda i, t, x: callback(self, stage, i, t, x)))
        return interleave_keyframes(keyframes, split_groups(between, k))

    def decode(self, latents: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """(B, 4, T, h, w) latents -> (B, 3, T, H, W) fp32 in [-1, 1], ``chunk_size`` frames at a time."""
        latents = latents.to(self.movq.dtype)
        if isinstance(self.movq, MoVQVideo):
            return self.movq.decode(latents, chunk_size=chunk_size).float()
        frames = fold_frames(latents)  # the image MoVQ of the 1.0 release decodes frame by frame
        decoded = [self.movq.decode(chunk, force_not_quantize=True).sample for chunk in frames.split(chunk_size)]
        return unfold_frames(torch.cat(decoded), latents.shape[2]).float()

    def frame_rate(self, passes: int) -> float:
        """Keyframes are ``frame_position_stride`` source frames apart; each pass multiplies the rate by k+1."""
        fps = SOURCE_FPS / self.unet.config.frame_position_stride
        if passes:
            fps *= (self.interpolation_unet.config.frames_between + 1) ** passes
        return fps

    def interpolation_skips(self, passes: int) -> list[int]:
        """Released skips (3, 1) for k=3; otherwise the source-frame spacing of the pass divided by (k+1)."""
        k = self.interpolation_unet.config.frames_between
        if k == 3 and passes <= len(RELEASED_SKIPS):
            return list(RELEASED_SKIPS[:passes])
        stride = self.unet.config.frame_position_stride
        return [max(1, round(stride / (k + 1) ** (p + 1))) for p in range(passes)]

    # ---- the call -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        height: int = 512,
        width: int = 512,
        preset: str = "low",
        num_keyframes: int = 15,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        interpolation_steps: int | None = None,
        interpolation_guidance_scale: float = 0.25,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        decode_chunk_size: int = 8,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end=None,
    ) -> KandinskyVideoPipelineOutput | tuple:
        """Generate videos.

        ``guidance_scale`` is the released w in (1 + w) * cond - w * uncond (5.0 released; diffusers' "6").
        ``preset``: low = keyframes only, medium = one interpolation pass, high = two. ``callback_on_step_end(
        pipeline, stage, step, timestep, latents)`` is called after every step of every stage.
        Returns frames (see :class:`KandinskyVideoPipelineOutput`) and the frame rate that keeps real-time motion.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else negative_prompt
        self.check_inputs(
            prompts, negatives, preset, output_type, height=height, width=width, num_keyframes=num_keyframes,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            interpolation_steps=interpolation_steps, interpolation_guidance_scale=interpolation_guidance_scale,
            num_videos_per_prompt=num_videos_per_prompt, decode_chunk_size=decode_chunk_size,
        )
        passes = PRESETS[preset]

        text = self.encode_prompt(prompts, negatives, num_videos_per_prompt)
        video = self.generate_keyframes(text, num_keyframes, height, width, num_inference_steps, guidance_scale,
                                        generator, latents, callback_on_step_end)
        for index, skip in enumerate(self.interpolation_skips(passes) if passes else []):
            video = self.interpolate(video, interpolation_steps or num_inference_steps,
                                     interpolation_guidance_scale, skip, generator, callback_on_step_end,
                                     stage=f"interpolation {index + 1}/{passes}")
        fps = self.frame_rate(passes)
        if output_type == "latent":
            frames = video
        else:
            decoded = self.decode(video, decode_chunk_size)
            frames = self.video_processor.postprocess_video(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return frames, fps
        return KandinskyVideoPipelineOutput(frames=frames, fps=fps)


class _Kandinsky3UNet(Kandinsky3UNet):
    """Kandinsky3UNet loaded with its text projection in fp32, whatever the dtype: it becomes our TextProjection."""

    _keep_in_fp32_modules = ["encoder_hid_proj"]


def load_movq(path: str | os.PathLike, dtype: torch.dtype | None = None) -> MoVQVideo | VQModel:
    """A decoder folder: MoVQ Video (trained temporal decoder) or the image MoVQ, by its config's class name."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{path!s} has no config.json: not a MoVQ folder (see `kandinsky-video convert`)")
    cls = MoVQVideo if json.loads(config.read_text()).get("_class_name") == "MoVQVideo" else VQModel
    return cls.from_pretrained(path, dtype=dtype)


def _temporal_config(folder: str | os.PathLike) -> dict:
    """The temporal settings saved beside temporal-only weights (placement, kernels, frame stride)."""
    saved = json.loads((Path(folder) / TEMPORAL_CONFIG_NAME).read_text())
    keys = ("temporal_placement", "temporal_conv", "temporal_attention", "frame_position_stride")
    return {key: saved[key] for key in keys if key in saved}
