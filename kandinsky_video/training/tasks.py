"""What differs between the three trainers: the model that trains, the clip it sees, its loss and its export.

Noise follows the released cosine schedule: diffusers' ``DDPMScheduler`` with ``squaredcos_cap_v2`` over 1000 steps
has the same betas. Notation: x0 clean latents, eps noise, t diffusion time in 0..999, x_t = add_noise(x0, eps, t),
v = get_velocity(x0, eps, t) = sqrt(abar_t) eps - sqrt(1 - abar_t) x0.
"""

import copy
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, VQModel
from einops import rearrange
from torch import nn

from ..data import ClipSpec
from ..models import KandinskyTextEncoder, KandinskyVideoInterpolationUNet, KandinskyVideoUNet, MoVQVideo
from ..models.frames import fold_frames, unfold_frames
from ..models.unet_interpolation import merge_groups
from ..pipelines import KandinskyVideoPipeline
from ..sampling import KandinskyVideoScheduler
from .config import TrainConfig

logger = logging.getLogger(__name__)

NUM_TRAIN_TIMESTEPS = 1000
ENCODE_CHUNK = 8  # frames through the frozen MoVQ encoder at once (memory only)


def noise_schedule(prediction_type: str) -> DDPMScheduler:
    """The released cosine schedule, for ``add_noise`` and ``get_velocity`` only (sampling uses the pipeline's)."""
    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type
    )


def load_training_pipeline(source: str, frames_between: int = 3) -> KandinskyVideoPipeline:
    """``tiny`` (random tiny models), a KandinskyVideoPipeline folder, or a Kandinsky 3.0 folder / hub id.

    From Kandinsky 3.0 the keyframe U-Net gets fresh (identity) temporal layers and there is no interpolation U-Net
    yet; the interpolation trainer builds one from the image U-Net.
    """
    if source == "tiny":
        from ..testing import tiny_pipeline

        return tiny_pipeline(frames_between=frames_between)
    index = Path(source) / "model_index.json"
    if index.is_file() and json.loads(index.read_text()).get("_class_name") == KandinskyVideoPipeline.__name__:
        return KandinskyVideoPipeline.from_pretrained(source)
    return KandinskyVideoPipeline.from_kandinsky3(source)


def check_model_source(source: str) -> None:
    """Fail early (before the accelerator starts) on a model folder that does not exist or holds no pipeline."""
    if source == "tiny":
        return
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"model={source} has no model_index.json; give a KandinskyVideoPipeline folder (kandinsky-video "
                "convert ... --kandinsky3 ...) or a Kandinsky 3.0 diffusers folder"
            )
    elif source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise FileNotFoundError(
            f"model={source} is neither a folder nor a hub id (owner/name); use 'tiny', a KandinskyVideoPipeline "
            "folder, or a Kandinsky 3.0 folder / hub id such as kandinsky-community/kandinsky-3"
        )


@torch.no_grad()
def encode_video(movq: MoVQVideo | VQModel, video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> latents (B, 4, T, H/8, W/8) fp32, by the frozen MoVQ encoder frame by frame."""
    video = video.to(movq.device, movq.dtype)
    if isinstance(movq, MoVQVideo):
        return movq.encode(video, chunk_size=ENCODE_CHUNK).float()
    frames = fold_frames(video)  # (B*T, 3, H, W)
    latents = torch.cat([movq.encode(chunk).latents for chunk in frames.split(ENCODE_CHUNK)])
    return unfold_frames(latents, video.shape[2]).float()


def split_clip(latents: torch.Tensor, frames_between: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip latents (B, C, (k+1)G+1, h, w) -> keyframes (B, C, G+1, h, w) and targets (B, k*C, G, h, w).

    Keyframes are frames 0, k+1, 2(k+1), ...; the targets of group g are the k frames after keyframe g, channels
    frame-major, the layout the interpolation U-Net predicts (``interleave_keyframes`` undoes this split).
    """
    keyframes = latents[:, :, :: frames_between + 1]
    groups = rearrange(latents[:, :, :-1], "b c (g j) h w -> b c g j h w", j=frames_between + 1)  # (B, C, G, k+1, h, w)
    return keyframes, merge_groups(groups[:, :, :, 1:])


class Task:
    """A trainer's model-specific pieces. ``model`` is the module that trains, with ``requires_grad`` already set;
    ``component`` is its name in the pipeline, which also generates the validation videos (``preset``)."""

    component: str
    preset: str
    needs_for_loss: tuple[str, ...]  # frozen pipeline components the loss runs (moved to the training device)

    def __init__(self, config: TrainConfig, pipeline: KandinskyVideoPipeline, model: nn.Module):
        self.config, self.pipeline, self.model = config, pipeline, model
        self.pipeline.set_progress_bar_config(disable=True)

    def clip_spec(self) -> ClipSpec:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def place(self, device: torch.device, dtype: torch.dtype, validating: bool) -> None:
        """Freeze every other component; put the ones the loss (and validation) needs on ``device`` in ``dtype``."""
        needed = set(self.needs_for_loss)
        if validating:
            needed |= {"text_encoder", "text_projection", "unet", "movq"}
            needed |= {"interpolation_unet"} if self.preset != "low" else set()
        for name, module in self.pipeline.components.items():
            if isinstance(module, nn.Module) and module is not self.model:
                module.requires_grad_(False).eval()
                if name in needed:
                    module.to(device)
                    if name != "text_projection" and module.dtype != dtype:  # the projection stays fp32, as released
                        module.to(dtype)

    def use(self, module: nn.Module) -> None:
        """Put ``module`` (the trained model, or a copy with gathered weights) into the pipeline."""
        self.pipeline.register_modules(**{self.component: module})

    def export(self, module: nn.Module, folder: Path) -> Path:
        """Write the trained weights where the pipeline loads them; returns that folder."""
        raise NotImplementedError


class KeyframeTask(Task):
    """Temporal blocks of the keyframe U-Net; the Kandinsky 3.0 weights stay frozen. Epsilon loss, caption dropout."""

    component, preset, needs_for_loss = "unet", "low", ("text_encoder", "text_projection", "movq")

    def __init__(self, config: TrainConfig):
        pipeline = load_training_pipeline(config.model)
        if not isinstance(pipeline.unet, KandinskyVideoUNet):
            raise ValueError(f"{config.model} has no KandinskyVideoUNet (got {type(pipeline.unet).__name__})")
        super().__init__(config, pipeline, pipeline.unet.freeze_spatial())
        self.text = KandinskyTextEncoder(pipeline.tokenizer, pipeline.text_encoder, pipeline.text_projection)
        self.noise = noise_schedule("epsilon")

    def clip_spec(self) -> ClipSpec:
        method = self.config.keyframes
        return ClipSpec(method.num_frames, method.frame_stride, method.frame_stride)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        latents = encode_video(self.pipeline.movq, batch["video"])  # (B, 4, T, h, w)
        text = self.text.encode(batch["caption"], device=latents.device)
        # Caption dropout: the released unconditional context (null embedding), so guidance has a branch to use.
        uncond_context, uncond_mask = self.text.unconditional(text.context)
        drop = torch.rand(len(latents), device=latents.device) < self.config.keyframes.uncond_prob  # (B,)
        context = torch.where(drop[:, None, None], uncond_context, text.context)  # (B, L, D)
        mask = torch.where(drop[:, None], uncond_mask, text.mask)  # (B, L)
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(latents),), device=latents.device)  # one t per video
        noisy = self.noise.add_noise(latents, noise, timesteps)
        prediction = model(noisy, timesteps, context, mask, batch["frame_positions"]).sample
        return F.mse_loss(prediction.float(), noise)

    def export(self, module: KandinskyVideoUNet, folder: Path) -> Path:
        module.save_temporal(folder / "unet_temporal")
        return folder / "unet_temporal"


class InterpolationTask(Task):
    """The whole interpolation U-Net: v-prediction of the k frames between keyframes, with the skip s and the
    keyframes' perturbation level p as conditions and zeroed keyframes as the unconditional branch."""

    component, preset, needs_for_loss = "interpolation_unet", "medium", ("movq",)

    def __init__(self, config: TrainConfig):
        method = config.interpolation
        pipeline = load_training_pipeline(config.model, method.frames_between)
        model = pipeline.interpolation_unet
        if model is None:
            logger.info("no interpolation U-Net in %s: initialising one from the image U-Net (k=%d)", config.model,
                        method.frames_between)
            model = KandinskyVideoInterpolationUNet.from_kandinsky3(
                pipeline.unet.spatial, method.frames_between, null_embedding=pipeline.text_projection.null_embedding
            )
            scheduler = KandinskyVideoScheduler(prediction_type="v_prediction")
            pipeline.register_modules(interpolation_unet=model, interpolation_scheduler=scheduler)
        elif model.config.frames_between != method.frames_between:
            raise ValueError(
                f"the interpolation U-Net in {config.model} predicts k={model.config.frames_between} frames; set "
                f"interpolation.frames_between={model.config.frames_between}"
            )
        if method.max_skip >= model.config.num_skip_embeddings:
            raise ValueError(
                f"interpolation.max_skip={method.max_skip} needs a skip embedding the model lacks "
                f"(it has {model.config.num_skip_embeddings}); use at most {model.config.num_skip_embeddings - 1}"
            )
        super().__init__(config, pipeline, model.requires_grad_(True))
        self.noise = noise_schedule("v_prediction")

    def clip_spec(self) -> ClipSpec:
        method = self.config.interpolation
        return ClipSpec((method.frames_between + 1) * method.num_groups + 1, 1, method.max_skip)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        method = self.config.interpolation
        keyframes, target = split_clip(encode_video(self.pipeline.movq, batch["video"]), method.frames_between)
        batch_size, device = len(target), target.device
        noise = torch.randn_like(target)
        timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch_size,), device=device)
        noisy = self.noise.add_noise(target, noise, timesteps)
        # Conditioning perturbation: keyframes noised to level p with the same schedule, p passed to the model.
        perturbation = torch.randint(0, method.max_perturbation + 1, (batch_size,), device=device)
        keyframes = self.noise.add_noise(keyframes, torch.randn_like(keyframes), perturbation)
        keep = (torch.rand(batch_size, device=device) >= method.uncond_prob).to(keyframes.dtype)  # (B,)
        keyframes = keyframes * keep[:, None, None, None, None]
        prediction = model(noisy, keyframes, timesteps, batch["stride"], perturbation).sample
        return F.mse_loss(prediction.float(), self.noise.get_velocity(target, noise, timesteps))

    def export(self, module: KandinskyVideoInterpolationUNet, folder: Path) -> Path:
        module.save_pretrained(folder / "interpolation_unet")
        return folder / "interpolation_unet"


class DecoderTask(Task):
    """MoVQ Video's temporal layers (or its whole decoder) on reconstructions of clips; the encoder stays frozen."""

    component, preset, needs_for_loss = "movq", "low", ()

    def __init__(self, config: TrainConfig):
        method = config.decoder
        pipeline = load_training_pipeline(config.model)
        movq = pipeline.movq
        temporal = {"temporal_kernel_size": list(method.temporal_kernel_size),
                    "temporal_attention": method.temporal_attention}
        if isinstance(movq, MoVQVideo):
            saved = {"temporal_kernel_size": list(movq.config.temporal_kernel_size),
                     "temporal_attention": movq.config.temporal_attention}
            if saved != temporal:
                raise ValueError(
                    f"the MoVQ Video in {config.model} has {saved}; set decoder.temporal_kernel_size and "
                    "decoder.temporal_attention to match (they only shape new temporal layers)"
                )
        else:
            movq = MoVQVideo.from_movq(movq, **temporal)
            pipeline.register_modules(movq=movq)
        # A frozen copy encodes: the trained module then only ever decodes, so any sharding of it stays simple.
        self.encoder = copy.deepcopy(movq).requires_grad_(False).eval()
        movq.freeze_image_layers(train_decoder=method.train_decoder)
        super().__init__(config, pipeline, movq)

    def place(self, device: torch.device, dtype: torch.dtype, validating: bool) -> None:
        super().place(device, dtype, validating)
        self.encoder.to(device, dtype)

    def clip_spec(self) -> ClipSpec:
        return ClipSpec(self.config.decoder.num_frames)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        video = batch["video"]  # (B, 3, T, H, W) in [-1, 1]
        reconstruction = model(encode_video(self.encoder, video))  # all T frames decoded jointly
        distance = F.l1_loss if self.config.decoder.loss == "l1" else F.mse_loss
        return distance(reconstruction.float(), video.float())

    def export(self, module: MoVQVideo, folder: Path) -> Path:
        module.save_pretrained(folder / "movq")
        return folder / "movq"


TASKS = {"keyframes": KeyframeTask, "interpolation": InterpolationTask, "decoder": DecoderTask}


def make_task(config: TrainConfig) -> Task:
    return TASKS[config.task](config)
