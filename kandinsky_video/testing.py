"""Tiny, seeded components shared by tests, benchmarks and documentation examples (no downloads, CPU-fast)."""

import torch
from diffusers import Kandinsky3UNet, VQModel
from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

# Kandinsky3UNet with the real 4-level topology (attention on levels 1-3) at tiny widths: ~0.1 M params.
# (diffusers hard-codes 4 attention flags, so fewer levels would not match the released layout.)
TINY_UNET_CONFIG = dict(
    in_channels=4,
    time_embedding_dim=8,
    groups=2,
    attention_head_dim=4,
    layers_per_block=2,
    block_out_channels=(8, 16, 16, 16),
    cross_attention_dim=8,
    encoder_hid_dim=16,
)

# MoVQ (VQModel, spatial norm) with the real x8 topology: ~0.4 M params.
TINY_MOVQ_CONFIG = dict(
    block_out_channels=(32, 32, 32, 32),
    down_block_types=("DownEncoderBlock2D",) * 3 + ("AttnDownEncoderBlock2D",),
    up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3,
    layers_per_block=1,
    norm_num_groups=8,
    norm_type="spatial",
    num_vq_embeddings=16,
    vq_embed_dim=4,
    latent_channels=4,
)

# T5 encoder whose d_model equals TINY_UNET_CONFIG["encoder_hid_dim"].
TINY_T5_CONFIG = dict(
    vocab_size=384, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, feed_forward_proj="gated-silu"
)


def tiny_kandinsky3_unet(seed: int = 0, **overrides) -> Kandinsky3UNet:
    """A randomly initialised tiny Kandinsky3UNet; overrides replace entries of TINY_UNET_CONFIG."""
    torch.manual_seed(seed)
    unet = Kandinsky3UNet(**{**TINY_UNET_CONFIG, **overrides})
    # diffusers zero-inits the conditional norms; give them weights so tests see conditioning at work.
    randomize_zero_parameters(unet, seed)
    return unet.eval()


def tiny_movq(seed: int = 0) -> VQModel:
    torch.manual_seed(seed)
    return VQModel(**TINY_MOVQ_CONFIG).eval()


def tiny_t5_encoder(seed: int = 0) -> T5EncoderModel:
    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(**TINY_T5_CONFIG)).eval()


def tiny_tokenizer() -> ByT5Tokenizer:
    """A byte-level T5 tokenizer that needs no files (same pad/eos conventions as the real T5 tokenizer)."""
    return ByT5Tokenizer()


def randomize_zero_parameters(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Fill every all-zero parameter with small noise, so identities that hold only by zero-init cannot hide bugs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


def tiny_pipeline(frames_between: int = 3, seed: int = 0):
    """A complete KandinskyVideoPipeline of tiny random models (temporal layers randomised, not identity)."""
    from .models import KandinskyVideoInterpolationUNet, KandinskyVideoUNet, MoVQVideo, TextProjection
    from .pipelines import KandinskyVideoPipeline
    from .sampling import KandinskyVideoScheduler

    base = tiny_kandinsky3_unet(seed)
    unet = KandinskyVideoUNet.from_kandinsky3(base)
    interpolation = KandinskyVideoInterpolationUNet.from_kandinsky3(base, frames_between=frames_between)
    projection = TextProjection(TINY_T5_CONFIG["d_model"], TINY_UNET_CONFIG["cross_attention_dim"])
    for model in (unet, interpolation, projection):
        randomize_zero_parameters(model, seed)
    return KandinskyVideoPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_t5_encoder(seed),
        text_projection=projection.eval(),
        unet=unet.eval(),
        movq=MoVQVideo.from_movq(tiny_movq(seed)).eval(),
        scheduler=KandinskyVideoScheduler(),
        interpolation_unet=interpolation.eval(),
        interpolation_scheduler=KandinskyVideoScheduler(prediction_type="v_prediction"),
    )
