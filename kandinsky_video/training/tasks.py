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
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn
from transformers import ByT5Tokenizer, PreTrainedModel, T5Config, T5EncoderModel

from ..data import ClipSpec, SampleCache, fingerprint
from ..models import (
    KandinskyTextEncoder,
    KandinskyVideoInterpolationUNet,
    KandinskyVideoUNet,
    MoVQVideo,
    TextProjection,
)
from ..models.frames import fold_frames, unfold_frames
from ..models.kandinsky3_walk import build_spatial_unet
from ..models.text_encoder import cut_context, embed_tokens, unconditional_context
from ..models.unet_interpolation import merge_groups
from ..pipelines import KandinskyVideoPipeline
from ..pipelines.pipeline_kandinsky_video import load_movq
from ..sampling import KandinskyVideoScheduler
from .config import FROM_SCRATCH, SIZES, TrainConfig
from .lpips import load_lpips

logger = logging.getLogger(__name__)

NUM_TRAIN_TIMESTEPS = 1000
# Frames through the frozen MoVQ encoder at once (memory and speed only): on the CPU 8, as many pixels on a GPU (512
# frames at 64x64). A GPU runs small frames 8 at a time in thousands of launch-bound calls (the demo's interpolation
# step on an H200: 0.88 s against 0.26 s); the CPU runs big chunks out of its caches (1.6-2.2x slower there).
ENCODE_FRAMES = 8
ENCODE_PIXELS_GPU = ENCODE_FRAMES * 512 * 512

# Architectures of the from-scratch tasks (movq, text_to_image), by size name: "tiny" is kandinsky_video.testing's,
# "demo" the demo model's (~1.3 M MoVQ, ~2.9 M U-Net, ~0.1 M T5; 64x64 frames -> 8x8 latents).
MODEL_SIZES = {
    "tiny": {
        "movq": None,  # None: kandinsky_video.testing.TINY_MOVQ_CONFIG / TINY_UNET_CONFIG / TINY_T5_CONFIG
        "unet": None,
        "text_encoder": None,
    },
    "demo": {
        "movq": {"block_out_channels": [32, 64, 64, 64]},  # overrides of TINY_MOVQ_CONFIG (same x8 topology)
        "unet": {"in_channels": 4, "time_embedding_dim": 64, "groups": 8, "attention_head_dim": 16,
                 "layers_per_block": 2, "block_out_channels": [64, 64, 64], "cross_attention_dim": 64},
        "text_encoder": {"vocab_size": 384, "d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4,
                         "feed_forward_proj": "gated-silu"},
    },
}
assert set(MODEL_SIZES) == set(SIZES), "config.SIZES names the sizes TrainConfig accepts"


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


def check_model_source(source: str, task: str = "keyframes") -> None:
    """Fail early (before the accelerator starts) on a model folder that does not exist or holds no pipeline."""
    if source == "tiny" or task in FROM_SCRATCH:  # from-scratch sizes are checked by TrainConfig
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
    """(B, 3, T, H, W) in [-1, 1] -> latents (B, 4, T, H/8, W/8) fp32, by the frozen MoVQ encoder frame by frame.

    Contiguous: ``randn_like`` draws in the input's memory layout, so cached latents (always contiguous) and fresh
    ones must share it for a cached run to draw the same noise.
    """
    video = video.to(movq.device, movq.dtype)
    per_call = per_clip = ENCODE_FRAMES  # frames per encoder call; MoVQ Video: per clip, all clips at once
    if video.device.type != "cpu":
        per_call = max(1, ENCODE_PIXELS_GPU // (video.shape[-2] * video.shape[-1]))
        per_clip = max(1, per_call // len(video))
    if isinstance(movq, MoVQVideo):
        return movq.encode(video, chunk_size=per_clip).float().contiguous()
    frames = fold_frames(video)  # (B*T, 3, H, W)
    latents = torch.cat([movq.encode(chunk).latents for chunk in frames.split(per_call)])
    return unfold_frames(latents, video.shape[2]).float().contiguous()


def with_noise(latents: torch.Tensor, std: float) -> torch.Tensor:
    """``latents`` plus Gaussian noise of ``std`` (none at 0): what an autoencoder's decoder trains on."""
    return latents + std * torch.randn_like(latents) if std else latents


def split_clip(latents: torch.Tensor, frames_between: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip latents (B, C, (k+1)G+1, h, w) -> keyframes (B, C, G+1, h, w) and targets (B, k*C, G, h, w).

    Keyframes are frames 0, k+1, 2(k+1), ...; the targets of group g are the k frames after keyframe g, channels
    frame-major, the layout the interpolation U-Net predicts (``interleave_keyframes`` undoes this split).
    """
    keyframes = latents[:, :, :: frames_between + 1]
    groups = rearrange(latents[:, :, :-1], "b c (g j) h w -> b c g j h w", j=frames_between + 1)  # (B, C, G, k+1, h, w)
    return keyframes, merge_groups(groups[:, :, :, 1:])


def cast_frozen(module: nn.Module, dtype: torch.dtype) -> None:
    """A frozen model's weights in ``dtype``, except what ``from_pretrained(dtype=dtype)`` would keep in fp32: a
    diffusers model's ``_keep_in_fp32_modules`` (the TextProjection), a transformers model's for fp16 (T5's ``wo``)
    and its ``_keep_in_fp32_modules_strict``. (``module.to(dtype)`` would cast those too.)"""
    keep = set(getattr(module, "_keep_in_fp32_modules", None) or ())
    if isinstance(module, PreTrainedModel):
        keep = (keep if dtype == torch.float16 else set()) | set(module._keep_in_fp32_modules_strict or ())
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(torch.float32 if keep.intersection(name.split(".")) else dtype)


class Task:
    """A trainer's model-specific pieces. ``model`` is the module that trains, with ``requires_grad`` already set;
    ``component`` is its name in the pipeline, which also generates the validation videos (``preset``)."""

    component: str
    preset: str
    needs_for_loss: tuple[str, ...]  # frozen pipeline components the loss runs (moved to the training device)

    def __init__(self, config: TrainConfig, pipeline: KandinskyVideoPipeline | None, model: nn.Module):
        self.config, self.pipeline, self.model = config, pipeline, model
        if pipeline is not None:  # None: a task without validation videos (movq)
            self.pipeline.set_progress_bar_config(disable=True)
        # data.cache_dir (keyframes, interpolation, text_to_image; TrainConfig checks): frozen outputs per sampled clip
        self.cache = SampleCache(config.data.cache_dir) if config.data.cache_dir else None
        self._identities = {}  # cache kind -> model identity, hashed once the frozen models are placed

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
                    cast_frozen(module.to(device), dtype)

    def identity(self, kind: str, *modules: nn.Module, extra: object = None) -> str:
        """The cache's model identity for ``kind`` (see :func:`~kandinsky_video.data.fingerprint`), hashed once."""
        if kind not in self._identities:
            self._identities[kind] = fingerprint(*modules, extra=extra)
        return self._identities[kind]

    def clip_latents(self, batch: dict) -> torch.Tensor:
        """The batch's clips -> latents (B, 4, T, h, w) fp32 by the frozen MoVQ, or from the cache where it has them."""
        movq, video = self.pipeline.movq, batch["video"]  # (B, 3, T, H, W)
        if self.cache is None:
            return encode_video(movq, video)
        identity = self.identity("latents", movq)
        keys = []
        for path, frames in zip(batch["path"], batch["frames"].tolist()):
            path = Path(path).resolve()
            stat = path.stat()  # a re-encoded video at the same path is a new entry
            size = list(video.shape[-2:])  # (H, W): the resolution
            keys.append(self.cache.key(str(path), stat.st_size, stat.st_mtime_ns, frames, size, identity))

        def encode(missing: list[int]) -> list[dict]:
            return [{"latents": latents} for latents in encode_video(movq, video[missing])]

        return torch.stack([row["latents"] for row in self.cache.rows("latents", keys, encode)]).to(movq.device)

    def use(self, module: nn.Module) -> None:
        """Put ``module`` (the trained model, or a copy with gathered weights) into the pipeline."""
        self.pipeline.register_modules(**{self.component: module})

    def export(self, module: nn.Module, folder: Path) -> Path:
        """Write the trained weights where the pipeline loads them; returns that folder."""
        raise NotImplementedError


def temporal_architecture(unet: KandinskyVideoUNet, method) -> KandinskyVideoUNet:
    """``unet``, or fresh temporal layers of the kind ``method`` (KeyframesConfig) asks for on its spatial U-Net."""
    keys = ("temporal_placement", "temporal_conv", "temporal_attention")
    wanted = {key: getattr(method, key) for key in keys if getattr(method, key)}
    if all(unet.config[key] == value for key, value in wanted.items()):
        return unet
    current = {key: unet.config[key] for key in (*keys, "frame_position_stride")}
    logger.warning("keyframes: fresh temporal layers %s replace the model's %s", wanted, current)
    return KandinskyVideoUNet.from_kandinsky3(unet.spatial, **{**current, **wanted})


class KeyframeTask(Task):
    """Temporal blocks of the keyframe U-Net; the Kandinsky 3.0 weights stay frozen. Epsilon loss, caption dropout."""

    component, preset, needs_for_loss = "unet", "low", ("text_encoder", "text_projection", "movq")

    def __init__(self, config: TrainConfig):
        pipeline = load_training_pipeline(config.model)
        if not isinstance(pipeline.unet, KandinskyVideoUNet):
            raise ValueError(f"{config.model} has no KandinskyVideoUNet (got {type(pipeline.unet).__name__})")
        pipeline.register_modules(unet=temporal_architecture(pipeline.unet, config.keyframes))
        super().__init__(config, pipeline, pipeline.unet.freeze_spatial())
        self.text = KandinskyTextEncoder(pipeline.tokenizer, pipeline.text_encoder, pipeline.text_projection)
        self.noise = noise_schedule("epsilon")

    def clip_spec(self) -> ClipSpec:
        method = self.config.keyframes
        return ClipSpec(method.num_frames, method.frame_stride, method.frame_stride)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        latents = self.clip_latents(batch)  # (B, 4, T, h, w)
        context, mask = self.text_context(batch["caption"], latents.device)  # (B, L, D), (B, L)
        # Caption dropout (after any cache): the released unconditional context (null embedding), shaped like the
        # batch's context, so guidance has a branch to use.
        uncond_context, uncond_mask = self.text.unconditional(context)
        drop = torch.rand(len(latents), device=latents.device) < self.config.keyframes.uncond_prob  # (B,)
        context = torch.where(drop[:, None, None], uncond_context, context)  # (B, L, D)
        mask = torch.where(drop[:, None], uncond_mask, mask)  # (B, L)
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(latents),), device=latents.device)  # one t per video
        noisy = self.noise.add_noise(latents, noise, timesteps)
        prediction = model(noisy, timesteps, context, mask, batch["frame_positions"]).sample
        return F.mse_loss(prediction.float(), noise)

    def text_context(self, captions: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> projected context (B, L, D) fp32 and mask (B, L) long, cut as released (L = longest + 1).

        Cached per caption at its own length; rows past a caption's length are zeros with mask 0, so padding the
        cached rows to the batch's longest gives what encoding the batch at once gives.
        """
        if self.cache is None:
            text = self.text.encode(captions, device=device)
            return text.context, text.mask
        tokenizer = self.text.tokenizer
        identity = self.identity("text", self.text.text_encoder, self.text.projection, extra=[
            type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer), self.text.max_length])
        keys = [self.cache.key(caption, identity) for caption in captions]

        def encode(missing: list[int]) -> list[dict]:
            text = self.text.encode([captions[index] for index in missing])
            lengths = (text.mask.sum(dim=1) + 1).tolist()  # each caption's own cut length
            return [{"context": context[:length], "mask": mask[:length]}
                    for context, mask, length in zip(text.context, text.mask, lengths)]

        rows = self.cache.rows("text", keys, encode)
        length = max(len(row["mask"]) for row in rows)
        context = torch.stack([F.pad(row["context"], (0, 0, 0, length - len(row["context"]))) for row in rows])
        mask = torch.stack([F.pad(row["mask"], (0, length - len(row["mask"]))) for row in rows])
        return context.to(device), mask.to(device)

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
                pipeline.unet.spatial, method.frames_between, null_embedding=pipeline.text_projection.null_embedding,
                image_conv_on=method.image_conv_on,
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
        keyframes, target = split_clip(self.clip_latents(batch), method.frames_between)
        batch_size, device = len(target), target.device
        noise = torch.randn_like(target)
        timesteps = torch.randint(method.min_timestep, NUM_TRAIN_TIMESTEPS, (batch_size,), device=device)
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
        # Frozen perceptual loss from the user's weights (none ship with the package); fp32 whatever the precision.
        self.lpips = load_lpips(method.lpips_weights) if method.lpips_weights else None
        super().__init__(config, pipeline, movq)

    def place(self, device: torch.device, dtype: torch.dtype, validating: bool) -> None:
        super().place(device, dtype, validating)
        cast_frozen(self.encoder.to(device), dtype)
        if self.lpips is not None:
            self.lpips.to(device)

    def clip_spec(self) -> ClipSpec:
        return ClipSpec(self.config.decoder.num_frames)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        video = batch["video"]  # (B, 3, T, H, W) in [-1, 1]
        method = self.config.decoder
        latents = with_noise(encode_video(self.encoder, video), method.latent_noise)
        reconstruction = model(latents)  # all T frames decoded jointly
        distance = F.l1_loss if method.loss == "l1" else F.mse_loss
        loss = distance(reconstruction.float(), video.float())
        if self.lpips is not None:
            # frame by frame: (B*T, 3, H, W) pairs -> (B*T,) distances
            perceptual = self.lpips(fold_frames(reconstruction.float()), fold_frames(video.float()))
            loss = loss + method.lpips_weight * perceptual.mean()
        return loss

    def export(self, module: MoVQVideo, folder: Path) -> Path:
        module.save_pretrained(folder / "movq")
        return folder / "movq"


def size_config(size: str, part: str) -> dict:
    """The architecture of ``part`` (movq | unet | text_encoder) for a named size of :data:`MODEL_SIZES`."""
    from ..testing import TINY_MOVQ_CONFIG, TINY_T5_CONFIG, TINY_UNET_CONFIG

    tiny = {"movq": TINY_MOVQ_CONFIG, "unet": {**TINY_UNET_CONFIG, "in_channels": 4}, "text_encoder": TINY_T5_CONFIG}
    config = {**tiny[part], **(MODEL_SIZES[size][part] or {})}
    config.pop("encoder_hid_dim", None)  # the U-Net takes projected context (build_spatial_unet)
    if part == "text_encoder":
        config["dropout_rate"] = 0.0  # a few million parameters on a small world: no dropout
    return {key: list(value) if isinstance(value, tuple) else value for key, value in config.items()}


class MovqTask(Task):
    """A MoVQ (VQModel, spatial norm) from scratch as an image autoencoder on single frames: L1 (+ L2)
    reconstruction, decoded without quantisation as the pipeline decodes (no codebook or GAN loss)."""

    component, preset, needs_for_loss = "movq", "low", ()

    def __init__(self, config: TrainConfig):
        torch.manual_seed(config.optim.seed)  # the fresh weights are a function of the seed
        super().__init__(config, None, VQModel(**size_config(config.model, "movq")).requires_grad_(True))

    def place(self, device: torch.device, dtype: torch.dtype, validating: bool) -> None:
        pass  # nothing frozen: the model is the whole task

    def clip_spec(self) -> ClipSpec:
        return ClipSpec(1)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        images = fold_frames(batch["video"])  # (B, 3, H, W) in [-1, 1]: one frame per video
        method = self.config.movq
        latents = model.encode(images).latents  # (B, 4, H/8, W/8), before quantisation
        reconstruction = model.decode(with_noise(latents, method.latent_noise), force_not_quantize=True).sample
        loss = F.l1_loss(reconstruction.float(), images.float())
        if method.l2_weight:
            loss = loss + method.l2_weight * F.mse_loss(reconstruction.float(), images.float())
        return loss + method.latent_weight * latents.float().pow(2).mean()

    def export(self, module: VQModel, folder: Path) -> Path:
        module.save_pretrained(folder / "movq")
        return folder / "movq"


class TextToImageModel(ModelMixin, ConfigMixin):
    """What ``text_to_image`` trains as one module: T5 encoder -> TextProjection (with the null embedding) ->
    Kandinsky3UNet taking projected context. One module, so DDP sees every trained weight in one forward."""

    # (config names differ from the submodules': ModelMixin would answer ``self.unet`` with the config entry)
    @register_to_config
    def __init__(self, unet_architecture: dict, text_encoder_architecture: dict):
        super().__init__()
        self.unet = build_spatial_unet(**unet_architecture)
        self.text_encoder = T5EncoderModel(T5Config(**text_encoder_architecture))
        self.text_projection = TextProjection(text_encoder_architecture["d_model"], unet_architecture["cross_attention_dim"])

    def load_base(self, folder: str) -> None:
        """Start from a trained base: the spatial U-Net, T5 encoder and text projection of a pipeline folder."""
        if not (Path(folder) / "model_index.json").is_file():
            raise FileNotFoundError(f"text_to_image.init_from={folder} holds no pipeline (model_index.json); give "
                                    "another text_to_image run's export/pipeline")
        base = KandinskyVideoPipeline.from_pretrained(folder)
        for part, trained in ((self.unet, base.unet.spatial), (self.text_encoder, base.text_encoder),
                              (self.text_projection, base.text_projection)):
            try:
                part.load_state_dict(trained.state_dict())
            except RuntimeError as error:
                raise ValueError(f"text_to_image.init_from={folder} is a base of another architecture than the "
                                 f"run's model size; set model= to the size it was trained at\n{error}") from error

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) token ids and mask -> context (B, L, D), mask (B, L): the pipeline's conditioning, with gradients."""
        return cut_context(*embed_tokens(self.text_encoder, self.text_projection, input_ids, attention_mask))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """Noise prediction (B, 4, h, w) for latents (B, 4, h, w); ``drop`` (B,) bool: null-embedding context."""
        context, mask = self.encode_text(input_ids, attention_mask)  # (B, L, D), (B, L)
        uncond_context, uncond_mask = unconditional_context(context, self.text_projection.null_embedding)
        context = torch.where(drop[:, None, None], uncond_context, context)
        mask = torch.where(drop[:, None], uncond_mask, mask)
        return self.unet(sample, timestep, encoder_hidden_states=context, encoder_attention_mask=mask).sample


class TextToImageTask(Task):
    """The text-to-image base on single frames, from scratch or on from a trained one (``text_to_image.init_from``):
    Kandinsky3UNet + T5 encoder + TextProjection, epsilon loss, caption dropout to the (learned) null embedding;
    latents from a frozen trained MoVQ. Exports a whole KandinskyVideoPipeline folder (identity temporal layers) that
    the keyframes/interpolation/decoder tasks start from.
    """

    component, preset, needs_for_loss = "unet", "low", ("movq",)

    def __init__(self, config: TrainConfig):
        movq_folder = Path(config.text_to_image.movq)
        if not (movq_folder / "config.json").is_file():
            raise FileNotFoundError(f"text_to_image.movq={movq_folder} holds no MoVQ (config.json); train one first: "
                                    "kandinsky-video train movq ..., then pass its export/movq")
        torch.manual_seed(config.optim.seed)
        # keywords: diffusers records positionally passed config values as defaults, which from_config then drops
        model = TextToImageModel(unet_architecture=size_config(config.model, "unet"),
                                 text_encoder_architecture=size_config(config.model, "text_encoder"))
        if config.text_to_image.init_from:
            model.load_base(config.text_to_image.init_from)
        self.movq = load_movq(movq_folder).requires_grad_(False).eval()
        pipeline = KandinskyVideoPipeline(
            tokenizer=ByT5Tokenizer(), text_encoder=model.text_encoder, text_projection=model.text_projection,
            unet=KandinskyVideoUNet.from_kandinsky3(model.unet), movq=self.movq,
            scheduler=KandinskyVideoScheduler(sample_range=config.text_to_image.sample_range),
        )
        # Borrowed for its released tokenisation; its constructor freezes the modules it holds, so unfreeze after.
        self.text = KandinskyTextEncoder(pipeline.tokenizer, model.text_encoder, model.text_projection)
        super().__init__(config, pipeline, model.requires_grad_(True))
        self.noise = noise_schedule("epsilon")

    def place(self, device: torch.device, dtype: torch.dtype, validating: bool) -> None:
        cast_frozen(self.movq.to(device), dtype)  # the only frozen part; the text encoder and projection train

    def clip_spec(self) -> ClipSpec:
        settings = self.config.text_to_image
        if not settings.first_frames:
            return ClipSpec(1)
        return ClipSpec(1, latest_start=settings.first_frames - 1, latest_start_share=settings.first_frames_share)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        latents = fold_frames(self.clip_latents(batch))  # (B, 4, h, w); the MoVQ is frozen, so cacheable
        tokens = self.text.tokenize(batch["caption"])
        drop = torch.rand(len(latents), device=latents.device) < self.config.text_to_image.uncond_prob  # (B,)
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(latents),), device=latents.device)
        noisy = self.noise.add_noise(latents, noise, timesteps)
        prediction = model(noisy, timesteps, tokens.input_ids.to(latents.device),
                           tokens.attention_mask.to(latents.device), drop)
        return F.mse_loss(prediction.float(), noise)

    def use(self, module: TextToImageModel) -> None:
        self.pipeline.register_modules(
            text_encoder=module.text_encoder, text_projection=module.text_projection,
            unet=KandinskyVideoUNet.from_kandinsky3(module.unet).to(module.device).eval(),
        )

    def export(self, module: TextToImageModel, folder: Path) -> Path:
        self.use(module)
        self.pipeline.save_pretrained(folder / "pipeline")
        return folder / "pipeline"


TASKS = {"keyframes": KeyframeTask, "interpolation": InterpolationTask, "decoder": DecoderTask, "movq": MovqTask,
         "text_to_image": TextToImageTask}


def make_task(config: TrainConfig) -> Task:
    return TASKS[config.task](config)
