"""Text conditioning of Kandinsky Video 1.0: T5 encoder -> projection -> masked, cut context.

The released code (``condition_processors.py``, ``condition_encoders.py``) differs from diffusers' Kandinsky3Pipeline
in ways that change the output, so this module follows the release exactly:

* tokens: T5, ``max_length`` 128, truncated, padded with the pad id (mask 0);
* the encoder runs in its own dtype (fp16 for the real model); a prompt whose output holds any inf/NaN anywhere is
  zeroed and loses its whole mask (the "overflow guard"); the output is then cast to fp32;
* projection (Linear without bias + LayerNorm), and padded positions are zeroed AFTER it (diffusers zeroes before);
* the sequence is cut to the longest real length in the batch + 1;
* unconditional context = zeros with the learned ``null_embedding`` at position 0 and mask ``[1, 0, ...]``
  (diffusers uses all-zero embeddings and an all-zero mask). The U-Net's text pooling is an unmasked mean, so this
  context must keep the positive prompt's length;
* a negative prompt borrows the positive prompt's token count and attention mask (see :meth:`tokenize`) and replaces
  the unconditional context.

Masks are ``torch.long`` 0/1 tensors, as the release builds them; ``Kandinsky3UNet`` and ``.bool()`` accept them.
"""

import gc
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5EncoderModel

from ..convert.common import CheckpointMismatchError, check_state_dict

logger = logging.getLogger(__name__)

WEIGHTS_HELP = (
    "download a T5 text encoder in the diffusers layout, e.g. "
    "`huggingface-cli download kandinsky-community/kandinsky-3 --include 'tokenizer/*' 'text_encoder/*'` "
    "(or google/flan-ul2 with tokenizer_subfolder='' and encoder_subfolder=''), and pass the local folder"
)


class TextProjection(ModelMixin, ConfigMixin):
    """Linear(encoder_dim -> context_dim, no bias) + LayerNorm, plus the learned unconditional token."""

    # All of it stays fp32 under from_pretrained(dtype=...): the release casts the encoder output to fp32 before it.
    _keep_in_fp32_modules = ["linear", "norm", "null_embedding"]

    @register_to_config
    def __init__(self, encoder_dim: int = 4096, context_dim: int = 4096):
        super().__init__()
        for name, value in (("encoder_dim", encoder_dim), ("context_dim", context_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.linear = nn.Linear(encoder_dim, context_dim, bias=False)
        self.norm = nn.LayerNorm(context_dim)
        # The released "null_embedding": the only token of the unconditional context. Zeros for a fresh model.
        self.null_embedding = nn.Parameter(torch.zeros(context_dim))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, L, encoder_dim) in any dtype -> (B, L, context_dim) in the projection's own (fp32 as loaded)."""
        return self.norm(self.linear(hidden_states.to(self.linear.weight.dtype)))

    def _load_renamed(
        self, tensors: Mapping[str, torch.Tensor], names: Mapping[str, str], what: str
    ) -> "TextProjection":
        """Copy ``tensors`` (source names) into this module through ``names`` (source -> ours), strictly.

        Keys are checked in the source's own naming, so errors name the keys of the file the user has.
        """
        ours = self.state_dict()
        check_state_dict(tensors, {source: ours[target] for source, target in names.items()}, what)
        with torch.no_grad():
            for source, target in names.items():
                ours[target].copy_(tensors[source])
        return self.eval()

    @classmethod
    def from_original(cls, projections: Mapping[str, torch.Tensor], null_embedding: torch.Tensor) -> "TextProjection":
        """From the published ``kandinsky_video.pt`` entries ``projections`` and ``null_embedding`` ((4096,)).

        ``projections`` holds ``t5.0.weight`` (Linear) and ``t5.1.weight`` / ``t5.1.bias`` (LayerNorm); the same keys
        without the ``t5.`` prefix are accepted too. Raises ``ValueError`` naming missing, unexpected or mis-shaped
        keys.
        """
        prefix = "" if "0.weight" in projections and "t5.0.weight" not in projections else "t5."
        if prefix + "0.weight" not in projections or projections[prefix + "0.weight"].ndim != 2:
            raise CheckpointMismatchError(
                f"original projections need a 2-D `t5.0.weight` (the Linear); got keys {sorted(projections)}"
            )
        context_dim, encoder_dim = projections[prefix + "0.weight"].shape
        names = {prefix + "0.weight": "linear.weight", prefix + "1.weight": "norm.weight",
                 prefix + "1.bias": "norm.bias", "null_embedding": "null_embedding"}
        return cls(encoder_dim=int(encoder_dim), context_dim=int(context_dim))._load_renamed(
            {**projections, "null_embedding": null_embedding}, names, "original text projection + null_embedding"
        )

    @classmethod
    def from_kandinsky3_unet(
        cls, unet: nn.Module | Mapping[str, torch.Tensor], null_embedding: torch.Tensor | None = None
    ) -> "TextProjection":
        """From a diffusers ``Kandinsky3UNet`` (or its state dict): ``encoder_hid_proj.projection_{linear,norm}.*``.

        diffusers' Kandinsky 3 has no null embedding: its pipeline's unconditional branch is all-zero embeddings with
        an all-zero mask. Without ``null_embedding`` the null token here is zeros, which is NOT that behaviour (our
        mask keeps position 0); pass the released one for Kandinsky Video.
        """
        state = unet.state_dict() if isinstance(unet, nn.Module) else unet
        prefix = "encoder_hid_proj."
        if prefix + "projection_linear.weight" not in state or state[prefix + "projection_linear.weight"].ndim != 2:
            raise CheckpointMismatchError(
                f"a 2-D {prefix}projection_linear.weight is required; is this a Kandinsky3UNet? "
                f"encoder_hid_proj keys found: {sorted(key for key in state if key.startswith(prefix))}"
            )
        context_dim, encoder_dim = state[prefix + "projection_linear.weight"].shape
        null_embedding = torch.zeros(context_dim) if null_embedding is None else null_embedding
        names = {prefix + "projection_linear.weight": "linear.weight", prefix + "projection_norm.weight": "norm.weight",
                 prefix + "projection_norm.bias": "norm.bias", "null_embedding": "null_embedding"}
        tensors = {key: value for key, value in state.items() if key.startswith(prefix)}
        return cls(encoder_dim=int(encoder_dim), context_dim=int(context_dim))._load_renamed(
            {**tensors, "null_embedding": null_embedding}, names, "Kandinsky3UNet encoder_hid_proj + null_embedding"
        )


def unconditional_context(
    context: torch.Tensor, null_embedding: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The released unconditional branch for a positive ``context`` (B, L, D): same shape, ``null_embedding`` at 0.

    Returns (context (B, L, D), mask (B, L) long ``[1, 0, ...]``). The length must be the positive one: the U-Net's
    text pooling averages over all L tokens, so the query is null_embedding / L.
    """
    uncond = torch.zeros_like(context)
    uncond[:, 0] = null_embedding.to(uncond)
    mask = torch.zeros(context.shape[:2], dtype=torch.long, device=context.device)
    mask[:, 0] = 1
    return uncond, mask


def null_context(
    null_embedding: torch.Tensor,
    batch_size: int,
    length: int = 2,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """[null_embedding, 0, ...] with mask [1, 0, ...]: (B, length, D), (B, length) long.

    The interpolation stage uses this (length 2, its own checkpoint's null embedding) for BOTH guidance branches.
    """
    if length < 1 or batch_size < 1:
        raise ValueError(f"batch_size and length must be >= 1, got {batch_size} and {length}")
    template = torch.empty(batch_size, length, null_embedding.shape[-1], device=device, dtype=dtype)
    return unconditional_context(template, null_embedding)


@dataclass
class TextConditioning:
    """Encoded prompts; masks are long 0/1. ``negative_*`` is the unconditional branch, always filled."""

    context: torch.Tensor  # (B, L, D) fp32
    mask: torch.Tensor  # (B, L) long
    negative_context: torch.Tensor  # (B, L, D): encoded negative prompt, or the null-embedding context
    negative_mask: torch.Tensor  # (B, L) long

    def for_guidance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(2B, L, D), (2B, L): conditional half first, unconditional second, as the released sampler stacks them."""
        return (torch.cat([self.context, self.negative_context]), torch.cat([self.mask, self.negative_mask]))


@dataclass
class TokenizedPrompts:
    """Token ids and masks, (B, max_length) long each, as the encoder sees them."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    negative_input_ids: torch.Tensor  # rows without a negative prompt are all pad ids
    negative_attention_mask: torch.Tensor  # rows without a negative prompt are all 0
    has_negative: torch.Tensor  # (B,) bool


def _check_prompts(prompts: str | Sequence[str], name: str, allow_none: bool = False) -> list:
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ValueError(f"{name} is empty; pass at least one prompt")
    for index, prompt in enumerate(prompts):
        if prompt is None and allow_none:
            continue
        if not isinstance(prompt, str) or not prompt.strip():
            hint = " (use None for 'no negative prompt')" if allow_none else ""
            raise ValueError(f"{name}[{index}] must be a non-empty string, got {prompt!r}{hint}")
    return prompts


class KandinskyTextEncoder:
    """Tokenizer + T5 encoder + :class:`TextProjection`, producing the released text conditioning."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        text_encoder: T5EncoderModel,
        projection: TextProjection,
        max_length: int = 128,
    ):
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2 (released: 128), got {max_length!r}")
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError(f"the tokenizer needs pad and eos tokens (T5 has both); got {type(tokenizer).__name__}")
        if text_encoder.config.d_model != projection.config.encoder_dim:
            raise ValueError(
                f"text encoder width d_model={text_encoder.config.d_model} does not match "
                f"projection.encoder_dim={projection.config.encoder_dim}"
            )
        self.tokenizer = tokenizer
        self.text_encoder: T5EncoderModel | None = text_encoder.eval().requires_grad_(False)
        self.projection = projection.eval().requires_grad_(False)
        self.max_length = max_length

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        *,
        projection: TextProjection | str | os.PathLike,
        dtype: torch.dtype = torch.float16,
        max_length: int = 128,
        tokenizer_subfolder: str = "tokenizer",
        encoder_subfolder: str = "text_encoder",
        **encoder_kwargs,
    ) -> "KandinskyTextEncoder":
        """Load ``tokenizer/`` and ``text_encoder/`` (diffusers layout) from a folder or a hub id.

        ``dtype`` defaults to fp16, the released precision (the overflow guard exists for it). ``projection``
        is a :class:`TextProjection` or a folder saved by it. ``encoder_kwargs`` go to
        ``T5EncoderModel.from_pretrained`` (e.g. ``variant="fp16"``, ``device_map``).
        """
        if isinstance(projection, (str, os.PathLike)):
            if not os.path.isdir(projection):
                raise FileNotFoundError(
                    f"projection folder {projection!s} does not exist; convert the published kandinsky_video.pt "
                    "with TextProjection.from_original(...).save_pretrained(folder) first"
                )
            projection = TextProjection.from_pretrained(projection)
        if os.path.isdir(path_or_id):
            for subfolder in (tokenizer_subfolder, encoder_subfolder):
                if not os.path.isdir(os.path.join(path_or_id, subfolder)):
                    raise FileNotFoundError(f"{os.path.join(path_or_id, subfolder)} does not exist; {WEIGHTS_HELP}")
        elif os.path.exists(path_or_id):
            raise ValueError(f"{path_or_id!s} is a file; pass the folder holding tokenizer/ and text_encoder/")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path_or_id, subfolder=tokenizer_subfolder)
            text_encoder = T5EncoderModel.from_pretrained(
                path_or_id, subfolder=encoder_subfolder, dtype=dtype, **encoder_kwargs
            )
        except OSError as error:
            raise FileNotFoundError(
                f"cannot load the T5 text encoder from {path_or_id!s} ({error}); {WEIGHTS_HELP}"
            ) from error
        return cls(tokenizer, text_encoder, projection, max_length=max_length)

    def to(self, device: torch.device | str) -> "KandinskyTextEncoder":
        """Move the encoder and projection to ``device``; dtypes stay (fp16 encoder, fp32 projection)."""
        if self.text_encoder is not None:
            self.text_encoder.to(device)
        self.projection.to(device)
        return self

    def release_encoder(self) -> None:
        """Drop the T5 encoder (~8.6 B parameters for the real model) once prompts are encoded."""
        self.text_encoder = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def null_embedding(self) -> torch.Tensor:
        return self.projection.null_embedding

    def tokenize(
        self, prompts: str | Sequence[str], negative_prompts: Sequence[str | None] | str | None = None
    ) -> TokenizedPrompts:
        """The released token rule, per item.

        A negative prompt keeps only as many ids as its positive prompt has (EOS included), its last kept id
        becomes EOS, the rest is pad ids, and it gets the POSITIVE prompt's attention mask: a shorter negative
        prompt thus has unmasked pad tokens, which is what the published model was sampled with.
        """
        prompts = _check_prompts(prompts, "prompt")
        negatives = [None] * len(prompts)
        if negative_prompts is not None:
            negatives = _check_prompts(negative_prompts, "negative_prompt", allow_none=True)
            if len(negatives) != len(prompts):
                raise ValueError(
                    f"got {len(prompts)} prompts but {len(negatives)} negative prompts; pass one per prompt"
                )
        pad, eos, length = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, self.max_length

        def encode_ids(texts: list[str]) -> list[list[int]]:
            return self.tokenizer(texts, max_length=length, truncation=True)["input_ids"] if texts else []

        for index, count in enumerate(len(ids) for ids in self.tokenizer(prompts, verbose=False)["input_ids"]):
            if count > length:
                logger.warning("prompt %d has %d tokens; only the first %d are used", index, count, length)
        positive = encode_ids(prompts)
        negative = iter(encode_ids([text for text in negatives if text is not None]))
        ids, mask, neg_ids, neg_mask = [], [], [], []
        for pos_ids, text in zip(positive, negatives):
            count = len(pos_ids)
            ids.append(pos_ids + [pad] * (length - count))
            mask.append([1] * count + [0] * (length - count))
            if text is None:
                neg_ids.append([pad] * length)
                neg_mask.append([0] * length)
                continue
            kept = next(negative)[:count]
            kept[-1] = eos
            neg_ids.append(kept + [pad] * (length - len(kept)))
            neg_mask.append(list(mask[-1]))  # the positive prompt's mask, as released
        as_long = lambda rows: torch.tensor(rows, dtype=torch.long)  # noqa: E731
        return TokenizedPrompts(
            as_long(ids), as_long(mask), as_long(neg_ids), as_long(neg_mask),
            torch.tensor([text is not None for text in negatives]),
        )

    @torch.no_grad()
    def _embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) ids and mask -> projected context (B, N, D) fp32 with padding zeroed, and the guarded mask (B, N)."""
        if self.text_encoder is None:
            raise RuntimeError("the T5 encoder was released (release_encoder()); reload it to encode new prompts")
        return embed_tokens(self.text_encoder, self.projection, input_ids, attention_mask)

    def encode(
        self,
        prompts: str | Sequence[str],
        negative_prompts: Sequence[str | None] | str | None = None,
        device: torch.device | str | None = None,
    ) -> TextConditioning:
        """Encode a batch: context (B, L, D), masks (B, L), L = longest real token count in the batch + 1.

        ``negative_prompts[i] = None`` (or no list) gives item i the null-embedding unconditional context. The
        released pipeline ran this under CUDA fp16 autocast (its projection Linear in fp16); wrap the call in
        ``torch.autocast("cuda", torch.float16)`` to reproduce that rounding too.
        """
        tokens = self.tokenize(prompts, negative_prompts)
        context, mask = self._embed(tokens.input_ids, tokens.attention_mask)
        length = cut_length(mask)
        rows = tokens.has_negative  # (B,) bool, CPU
        if rows.any():
            neg, neg_mask = self._embed(tokens.negative_input_ids[rows], tokens.negative_attention_mask[rows])
            # Without overflow the negative masks equal the positive ones; the max only matters when one of the
            # two overflowed (the released code then fails on mismatched lengths) and never cuts real tokens.
            length = max(length, cut_length(neg_mask))
        context, mask = context[:, :length], mask[:, :length]  # (B, L, D), (B, L)
        negative_context, negative_mask = unconditional_context(context, self.null_embedding)
        if rows.any():
            rows = rows.to(context.device)
            negative_context[rows] = neg[:, :length]
            negative_mask[rows] = neg_mask[:, :length]
        result = TextConditioning(context, mask, negative_context, negative_mask)
        if device is not None:
            result = TextConditioning(*(tensor.to(device) for tensor in vars(result).values()))
        return result

    def unconditional(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Null-embedding unconditional context shaped like ``context`` (B, L, D); see :func:`unconditional_context`."""
        return unconditional_context(context, self.null_embedding)

    def null_context(
        self, batch_size: int, length: int = 2, null_embedding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`null_context` with this projection's null embedding, or another one (the interpolation U-Net's)."""
        null_embedding = self.null_embedding if null_embedding is None else null_embedding
        return null_context(null_embedding, batch_size, length, device=null_embedding.device)


def embed_tokens(
    text_encoder: T5EncoderModel, projection: TextProjection, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The released text path for token ids: (B, N) ids and mask -> context (B, N, D) fp32, guarded mask (B, N).

    Differentiable: :meth:`KandinskyTextEncoder.encode` runs it under ``no_grad``; training a text encoder from
    scratch (the demo's ``text_to_image`` task) runs it with gradients, so both build the same context.
    """
    device = text_encoder.device
    hidden = text_encoder(
        input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
    ).last_hidden_state  # (B, N, E), encoder dtype
    # Overflow guard, per prompt and over ALL positions (padding included), in the encoder's dtype.
    overflow = ~torch.isfinite(hidden).flatten(1).all(dim=1)  # (B,)
    hidden = hidden.masked_fill(overflow[:, None, None], 0).to(projection.device)
    if overflow.any():
        logger.warning("text encoder overflowed (inf/NaN) for prompts %s: their conditioning is dropped",
                       overflow.nonzero().flatten().tolist())
    # The release drops the mask of every all-zero embedding, i.e. of every guarded prompt.
    dropped = (hidden == 0).flatten(1).all(dim=1)  # (B,)
    attention_mask = attention_mask.to(projection.device).masked_fill(dropped[:, None], 0)
    # (B, N, D) fp32 between models; the projection casts its input to its own dtype (fp32 as loaded, as released).
    context = projection(hidden).float()
    # Zeroed AFTER the projection: LayerNorm would give pad positions non-zero rows.
    context = context.masked_fill(attention_mask[..., None] == 0, 0)
    return context, attention_mask


def cut_length(mask: torch.Tensor) -> int:
    """The released sequence length: the longest real token count in the batch + 1."""
    return int(mask.sum(dim=1).max()) + 1


def cut_context(context: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, D) / (B, N) cut to :func:`cut_length`."""
    length = cut_length(mask)
    return context[:, :length], mask[:, :length]
