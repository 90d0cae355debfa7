"""Tiny, seeded evaluation networks for tests and examples: real topologies at 1/16 width, no downloads."""

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

from .c3d import C3D, TGANv2C3D
from .i3d import I3D

TINY_WIDTH_DIVISOR = 16
TINY_CLIP_IMAGE_SIZE = 32
TINY_WORDS = ("a", "person", "dog", "is", "running", "playing", "the", "piano", "on", "beach", "cat", "red", "car")


def randomize_batch_norm(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give BatchNorm layers non-trivial statistics and scales, so a conversion that drops them cannot pass."""
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, torch.nn.BatchNorm3d):
                channels = norm.num_features
                norm.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
                norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
                norm.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                norm.bias.copy_(torch.randn(channels, generator=generator) * 0.1)


def variance_preserving_init(module: torch.nn.Module) -> None:
    """He-normal weights for every conv/linear: with PyTorch's default init the signal of a deep random network
    fades, and every input would get the same features (so FVD 0 would pass any test)."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.Conv3d | torch.nn.Linear):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")


def tiny_i3d(seed: int = 0, num_classes: int = 400) -> I3D:
    torch.manual_seed(seed)
    model = I3D(num_classes=num_classes, width_divisor=TINY_WIDTH_DIVISOR)
    variance_preserving_init(model)
    randomize_batch_norm(model, torch.Generator().manual_seed(seed))
    return model.eval()


def tiny_c3d(seed: int = 0) -> TGANv2C3D:
    """C3D at 1/16 width with TGANv2 preprocessing and a random mean clip shaped like mean2.npz (3, 16, 128, 171)."""
    torch.manual_seed(seed)
    c3d = C3D(width_divisor=TINY_WIDTH_DIVISOR)
    variance_preserving_init(c3d)
    with torch.no_grad():
        c3d.conv1a.weight /= 128.0  # TGANv2 feeds 0..256 minus the mean: keep the random logits near unit scale
    mean_clip = np.random.default_rng(seed).uniform(80, 120, size=(3, 16, 128, 171)).astype(np.float32)
    return TGANv2C3D(c3d, mean_clip).eval()


def tiny_clip_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer built in memory (<pad>=0, <bos>=1, words, <unk>, <eos> last)."""
    tokens = ["<pad>", "<bos>", *TINY_WORDS, "<unk>", "<eos>"]
    backend = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 1), ("<eos>", len(tokens) - 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=16,
    )


def tiny_clip(seed: int = 0) -> tuple[CLIPModel, PreTrainedTokenizerFast, CLIPImageProcessor]:
    """(model, tokenizer, image processor) of a 1-layer CLIP on 32x32 images, CLIP's standard preprocessing."""
    tokenizer = tiny_clip_tokenizer()
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=len(tokenizer) - 1,
    )
    vision = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=TINY_CLIP_IMAGE_SIZE,
        patch_size=8,
    )
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).eval()
    size = TINY_CLIP_IMAGE_SIZE
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return model, tokenizer, processor
