"""Text conditioning follows the released code exactly (tiny T5 + byte tokenizer, CPU)."""

import pytest
import torch
import torch.nn.functional as F

from kandinsky_video.models.text_encoder import (
    KandinskyTextEncoder,
    TextProjection,
    null_context,
    unconditional_context,
)
from kandinsky_video.testing import randomize_zero_parameters, tiny_kandinsky3_unet, tiny_t5_encoder, tiny_tokenizer

PROMPTS = ["a cat", "a red dog runs on the grass"]  # 6 and 28 tokens with ByT5 (EOS included)


def tiny_projection(seed: int = 0) -> TextProjection:
    torch.manual_seed(seed)
    projection = TextProjection(encoder_dim=16, context_dim=8)
    with torch.no_grad():  # LayerNorm weight/bias and null embedding away from their 1/0 init
        projection.norm.weight.normal_()
        projection.norm.bias.normal_()
    randomize_zero_parameters(projection, seed)
    return projection.eval()


@pytest.fixture(scope="module")
def encoder() -> KandinskyTextEncoder:
    return KandinskyTextEncoder(tiny_tokenizer(), tiny_t5_encoder(), tiny_projection())


def record_encoder_inputs(encoder: KandinskyTextEncoder) -> tuple[list, torch.utils.hooks.RemovableHandle]:
    calls = []
    handle = encoder.text_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((kwargs["input_ids"].clone(), kwargs["attention_mask"].clone())),
        with_kwargs=True,
    )
    return calls, handle


def reference_embed(encoder: KandinskyTextEncoder, ids: list[list[int]], masks: list[list[int]]):
    """The released computation written out: encoder, fp32, Linear, LayerNorm, zero padding (no cut)."""
    ids, masks = torch.tensor(ids), torch.tensor(masks)
    hidden = encoder.text_encoder(input_ids=ids, attention_mask=masks).last_hidden_state.float()
    p = encoder.projection
    context = F.layer_norm(F.linear(hidden, p.linear.weight), (8,), p.norm.weight, p.norm.bias, p.norm.eps)
    return context * masks[..., None], masks


def pad(ids: list[int], value: int, length: int = 128) -> list[int]:
    return ids + [value] * (length - len(ids))


@torch.no_grad()
def test_encode_matches_reference_computation(encoder):
    tok = encoder.tokenizer
    negatives = ["ugly, blurry, low quality, watermark, text", None]
    positive = [tok(p)["input_ids"] for p in PROMPTS]  # short prompts: no truncation at 128
    ids = [pad(p, tok.pad_token_id) for p in positive]
    masks = [pad([1] * len(p), 0) for p in positive]
    context, mask = reference_embed(encoder, ids, masks)
    length = max(len(p) for p in positive) + 1
    negative = tok(negatives[0])["input_ids"][: len(positive[0]) - 1] + [tok.eos_token_id]
    neg_context, _ = reference_embed(encoder, [pad(negative, tok.pad_token_id)], masks[:1])

    out = encoder.encode(PROMPTS, negatives)

    assert out.context.shape == (2, length, 8) and out.context.dtype == torch.float32
    assert out.mask.dtype == torch.long and out.negative_mask.dtype == torch.long
    torch.testing.assert_close(out.context, context[:, :length], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.mask, mask[:, :length])
    torch.testing.assert_close(out.negative_context[0], neg_context[0, :length], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.negative_mask[0], mask[0, :length])
    # item 1 had no negative prompt: the null-embedding context
    assert torch.equal(out.negative_context[1, 0], encoder.null_embedding)
    assert not out.negative_context[1, 1:].any()
    # cond first, uncond second
    stacked, stacked_mask = out.for_guidance()
    assert torch.equal(stacked, torch.cat([out.context, out.negative_context]))
    assert torch.equal(stacked_mask, torch.cat([out.mask, out.negative_mask]))


@torch.no_grad()
def test_padding_zeroed_after_projection(encoder):
    out = encoder.encode(PROMPTS)
    real = out.mask.bool()
    assert not out.context[~real].any()
    assert out.context[real].abs().sum(-1).gt(0).all()
    # Without the zeroing, the projection (LayerNorm bias) would give the padded rows non-zero values:
    tokens = encoder.tokenize(PROMPTS)
    hidden = encoder.text_encoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
    projected = encoder.projection(hidden)[:, : out.context.shape[1]]
    assert projected[~real].abs().sum(-1).gt(0).all()
    torch.testing.assert_close(out.context[real], projected[real])


def test_cut_length_is_longest_plus_one(encoder):
    tok = encoder.tokenizer
    prompts = ["x", "a cat", "a much longer prompt about a dog"]
    lengths = [len(tok(p)["input_ids"]) for p in prompts]
    out = encoder.encode(prompts)
    assert out.context.shape[1] == max(lengths) + 1 == out.mask.shape[1] == out.negative_context.shape[1]
    assert out.mask.sum(1).tolist() == lengths
    assert encoder.encode(prompts[:1]).context.shape[1] == lengths[0] + 1


def test_long_prompt_truncated_to_max_length(encoder):
    out = encoder.encode(["z" * 300])
    assert out.context.shape[1] == 128 and out.mask.all()  # 128 real tokens: nothing to cut beyond max_length
    tokens = encoder.tokenize(["z" * 300])
    assert tokens.input_ids[0, -1] == encoder.tokenizer.eos_token_id


@pytest.mark.parametrize("bad_value", [float("inf"), float("nan")])
def test_overflow_guard_drops_whole_prompt(encoder, bad_value):
    clean = encoder.encode(PROMPTS)

    def inject(module, args, output):  # one bad value in item 1 (the longer prompt), at a padded position
        output.last_hidden_state[1, 100, 3] = bad_value

    handle = encoder.text_encoder.register_forward_hook(inject)
    try:
        out = encoder.encode(PROMPTS)
    finally:
        handle.remove()
    assert not out.context[1].any() and not out.mask[1].any()
    # the cut now follows the surviving prompt (released: mask sum after the guard)
    length = int(clean.mask[0].sum()) + 1
    assert out.context.shape[1] == length
    torch.testing.assert_close(out.context[0], clean.context[0, :length], rtol=0, atol=0)
    assert torch.equal(out.mask[0], clean.mask[0, :length])


def test_unconditional_context_layout(encoder):
    out = encoder.encode(PROMPTS)
    null = encoder.null_embedding
    assert out.negative_context.shape == out.context.shape
    assert torch.equal(out.negative_context[:, 0], null.expand(2, -1))
    assert not out.negative_context[:, 1:].any()
    assert out.negative_mask.tolist() == [[1] + [0] * (out.context.shape[1] - 1)] * 2
    context, mask = encoder.unconditional(out.context)
    assert torch.equal(context, out.negative_context) and torch.equal(mask, out.negative_mask)
    context, mask = unconditional_context(out.context, null)
    assert torch.equal(context, out.negative_context) and torch.equal(mask, out.negative_mask)


def test_null_context_for_interpolation(encoder):
    context, mask = encoder.null_context(batch_size=3)
    assert context.shape == (3, 2, 8) and mask.tolist() == [[1, 0]] * 3
    assert torch.equal(context[:, 0], encoder.null_embedding.expand(3, -1)) and not context[:, 1].any()
    other = torch.randn(8)  # the interpolation checkpoint's own null embedding
    context, _ = null_context(other, batch_size=2, length=2)
    assert torch.equal(context[:, 0], other.expand(2, -1))


def test_negative_prompt_token_rule(encoder):
    tok = encoder.tokenizer
    eos, pad_id = tok.eos_token_id, tok.pad_token_id
    prompts = ["a cat sits", "a cat sits"]
    negatives = ["blurry, low quality, watermark", "ugly"]  # longer, shorter
    n = len(tok(prompts[0])["input_ids"])  # 11
    calls, handle = record_encoder_inputs(encoder)
    try:
        out = encoder.encode(prompts, negatives)
    finally:
        handle.remove()
    (pos_ids, pos_mask), (neg_ids, neg_mask) = calls
    longer = tok(negatives[0])["input_ids"][: n - 1] + [eos]
    shorter = tok(negatives[1])["input_ids"]
    assert neg_ids[0].tolist() == pad(longer, pad_id)
    assert neg_ids[1].tolist() == pad(shorter, pad_id)
    assert len(shorter) < n and neg_ids[1, len(shorter) : n].eq(pad_id).all()
    assert torch.equal(neg_mask, pos_mask)  # the positive prompt's mask, also over the shorter one's pads
    assert neg_mask[1, :n].all() and not neg_mask[1, n:].any()
    assert out.negative_context.shape == out.context.shape == (2, n + 1, 8)
    assert torch.equal(out.negative_mask, out.mask)
    assert out.negative_context[1, len(shorter) : n].abs().sum(-1).gt(0).all()  # unmasked pads are kept
    assert not out.negative_context[:, n:].any()


def test_fp16_encoder_output_cast_to_fp32():
    encoder = KandinskyTextEncoder(tiny_tokenizer(), tiny_t5_encoder().half(), tiny_projection())
    out = encoder.encode(PROMPTS)
    assert out.context.dtype == torch.float32
    tokens = encoder.tokenize(PROMPTS)
    with torch.no_grad():
        hidden = encoder.text_encoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        assert hidden.last_hidden_state.dtype == torch.float16
        expected = encoder.projection(hidden.last_hidden_state.float()) * tokens.attention_mask[..., None]
    torch.testing.assert_close(out.context, expected[:, : out.context.shape[1]], rtol=0, atol=0)


def test_from_original_copies_exact_tensors():
    source = tiny_projection(seed=1)
    projections = {
        "t5.0.weight": source.linear.weight, "t5.1.weight": source.norm.weight, "t5.1.bias": source.norm.bias
    }
    null = torch.randn(8)
    projection = TextProjection.from_original(projections, null)
    assert projection.config.encoder_dim == 16 and projection.config.context_dim == 8
    assert torch.equal(projection.linear.weight, source.linear.weight)
    assert torch.equal(projection.norm.weight, source.norm.weight)
    assert torch.equal(projection.norm.bias, source.norm.bias)
    assert torch.equal(projection.null_embedding, null)
    bare = {key.removeprefix("t5."): value for key, value in projections.items()}
    assert torch.equal(TextProjection.from_original(bare, null).norm.bias, source.norm.bias)

    with pytest.raises(ValueError, match=r"t5\.1\.bias"):
        TextProjection.from_original({k: v for k, v in projections.items() if k != "t5.1.bias"}, null)
    with pytest.raises(ValueError, match=r"t5\.1\.weight"):
        TextProjection.from_original({**projections, "t5.1.weight": torch.ones(9)}, null)
    with pytest.raises(ValueError, match="null_embedding"):
        TextProjection.from_original(projections, torch.zeros(4096))
    with pytest.raises(ValueError, match=r"t5\.2\.weight"):
        TextProjection.from_original({**projections, "t5.2.weight": torch.ones(8)}, null)
    with pytest.raises(ValueError, match=r"t5\.0\.weight"):
        TextProjection.from_original({"t5.1.weight": torch.ones(8)}, null)


def test_from_kandinsky3_unet_copies_exact_tensors():
    unet = tiny_kandinsky3_unet()  # encoder_hid_dim 16 -> cross_attention_dim 8
    proj = unet.encoder_hid_proj
    projection = TextProjection.from_kandinsky3_unet(unet)
    assert torch.equal(projection.linear.weight, proj.projection_linear.weight)
    assert torch.equal(projection.norm.weight, proj.projection_norm.weight)
    assert torch.equal(projection.norm.bias, proj.projection_norm.bias)
    assert not projection.null_embedding.any()
    null = torch.randn(8)
    assert torch.equal(TextProjection.from_kandinsky3_unet(unet, null_embedding=null).null_embedding, null)

    state = unet.state_dict()
    with pytest.raises(ValueError, match=r"encoder_hid_proj\.projection_norm\.bias"):
        TextProjection.from_kandinsky3_unet(
            {k: v for k, v in state.items() if k != "encoder_hid_proj.projection_norm.bias"}
        )
    with pytest.raises(ValueError, match=r"encoder_hid_proj\.projection_norm\.weight"):
        TextProjection.from_kandinsky3_unet({**state, "encoder_hid_proj.projection_norm.weight": torch.ones(3)})
    with pytest.raises(ValueError, match="null_embedding"):
        TextProjection.from_kandinsky3_unet(unet, null_embedding=torch.zeros(16))
    with pytest.raises(ValueError, match="projection_linear"):
        TextProjection.from_kandinsky3_unet({"conv_in.weight": torch.ones(1)})


def test_projection_save_load_round_trip(tmp_path):
    projection = tiny_projection()
    projection.save_pretrained(tmp_path)
    loaded = TextProjection.from_pretrained(tmp_path)
    assert (loaded.config.encoder_dim, loaded.config.context_dim) == (16, 8)
    for key, value in projection.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_from_pretrained_folder_and_release(tmp_path, encoder):
    encoder.tokenizer.save_pretrained(tmp_path / "tokenizer")
    encoder.text_encoder.save_pretrained(tmp_path / "text_encoder")
    encoder.projection.save_pretrained(tmp_path / "projection")
    loaded = KandinskyTextEncoder.from_pretrained(
        tmp_path, projection=tmp_path / "projection", dtype=torch.float32
    )
    expected, out = encoder.encode(PROMPTS), loaded.encode(PROMPTS)
    torch.testing.assert_close(out.context, expected.context, rtol=0, atol=0)

    loaded.release_encoder()
    assert loaded.text_encoder is None
    with pytest.raises(RuntimeError, match="released"):
        loaded.encode(PROMPTS)
    assert loaded.null_context(2)[0].shape == (2, 2, 8)  # still usable for the interpolation stage

    with pytest.raises(FileNotFoundError, match="text_encoder"):
        KandinskyTextEncoder.from_pretrained(tmp_path / "tokenizer", projection=encoder.projection)
    with pytest.raises(FileNotFoundError, match="projection"):
        KandinskyTextEncoder.from_pretrained(tmp_path, projection=tmp_path / "missing")


@pytest.mark.parametrize(
    "prompts, negatives, message",
    [
        ([""], None, r"prompt\[0\]"),
        (["a cat", "   "], None, r"prompt\[1\]"),
        ([], None, "empty"),
        (["a cat"], [""], "None"),
        (["a cat"], ["x", "y"], "1 prompts but 2 negative"),
    ],
)
def test_bad_prompts_raise(encoder, prompts, negatives, message):
    with pytest.raises(ValueError, match=message):
        encoder.encode(prompts, negatives)
