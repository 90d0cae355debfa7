"""bf16 and fp16 on the CPU: loading, every pipeline stage, the image modes, animation, the demo CLI and the trainers.

The precision rule (docs/architecture.md, "Precision"): weights in the requested dtype except the TextProjection
(fp32); noise, latents, sampler, guidance and text context fp32 between models; each model call casts its inputs.
"""

import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file
from torch import nn

from kandinsky_video import KandinskyVideoPipeline
from kandinsky_video.animation import AnimationSpec, render_animation
from kandinsky_video.animation.kandinsky import kandinsky_callables
from kandinsky_video.cli import main
from kandinsky_video.data import ClipKey, TextVideoDataset, collate_clips, load_records
from kandinsky_video.data.synthetic import write_square_videos
from kandinsky_video.models import TextProjection
from kandinsky_video.models.unet_inpaint import Kandinsky3ConditionedUNet
from kandinsky_video.pipelines import pipeline_kandinsky3_image, pipeline_kandinsky_video
from kandinsky_video.pipelines.loading import inpainting_components, load_pipeline
from kandinsky_video.pipelines.pipeline_kandinsky3_image import Kandinsky3ImagePipeline
from kandinsky_video.sampling.loop import randn_video
from kandinsky_video.testing import (TINY_T5_CONFIG, TINY_UNET_CONFIG, randomize_zero_parameters,
                                     tiny_kandinsky3_unet, tiny_movq, tiny_t5_encoder, tiny_tokenizer)
from kandinsky_video.training import load_config, make_task, train
from kandinsky_video.training.loop import frozen_dtype

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
HALF = (torch.bfloat16, torch.float16)
PROMPT = "a red circle moving right"
GUIDANCE = 1.0  # w: the usual 3-5 multiply each model's rounding by 1 + 2w, and tiny random models round a lot

# Largest and mean absolute difference to the fp32 run allowed, in [0, 1] pixels. Measured here (tiny random models,
# torch 2.13 CPU, 1 and 2 threads), max / mean:
#   bf16: video 0.31 / 0.0049, text-to-image 0.084 / 0.0034, image-to-image 0.18 / 0.0084, inpainting 0.075 / 0.0051,
#         animation 0.36 / 0.0087
#   fp16: video 0.058 / 0.0007, text-to-image 0.054 / 0.0018, image-to-image 0.042 / 0.0016, inpainting 0.009 /
#         0.0007, animation 0.11 / 0.0025
# Single pixels move far (the first steps divide the prediction by sqrt(abar) ~ 0.003 before thresholding; the tiny
# MoVQ is no autoencoder), so the mean is the sharp test: another seed in fp32 differs by 0.064-0.082 on average.
TOLERANCE = {torch.bfloat16: (0.6, 0.02), torch.float16: (0.25, 0.006)}


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny pipeline folder plus tiny inpainting weights (a U-Net whose condition channels matter)."""
    folder = tmp_path_factory.mktemp("half") / "model"
    shutil.copytree(tiny_model_dir, folder)
    inpaint_unet = Kandinsky3ConditionedUNet.from_kandinsky3(tiny_kandinsky3_unet(1))
    randomize_zero_parameters(inpaint_unet, 1)
    inpaint_unet.save_pretrained(folder / "inpaint_unet")
    projection = TextProjection(TINY_T5_CONFIG["d_model"], TINY_UNET_CONFIG["cross_attention_dim"])
    randomize_zero_parameters(projection, 2)
    projection.save_pretrained(folder / "inpaint_text_projection")
    return folder


@pytest.fixture(scope="module")
def pipelines(model_dir):
    """dtype -> (video pipeline, image pipeline on its models), loaded as the commands load them."""
    loaded = {}
    for dtype in (torch.float32, *HALF):
        video = load_pipeline(model_dir, dtype, "cpu")
        image = Kandinsky3ImagePipeline.from_video_pipeline(
            video, **inpainting_components(model_dir, dtype, "cpu", required=True))
        for pipeline in (video, image):
            pipeline.set_progress_bar_config(disable=True)
        loaded[dtype] = video, image
    return loaded


def seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


PHOTO = np.random.default_rng(0).uniform(0.2, 0.8, (64, 64, 3)).astype(np.float32)
REPAINT = np.zeros((64, 64), np.float32)
REPAINT[:, 32:] = 1


def run_video(pipelines, record: dict) -> np.ndarray:
    """Keyframes, both interpolation passes and the MoVQ Video decode; ``record`` collects each model's inputs and
    the (stage, dtype) of the latents between steps."""
    video, _ = pipelines

    def recorder(name):
        return lambda module, args: record.setdefault(name, []).append(args[0])

    hooks = [module.register_forward_pre_hook(recorder(name)) for name, module in (
        ("unet", video.unet), ("interpolation_unet", video.interpolation_unet),
        ("movq", video.movq.movq.post_quant_conv))]

    def callback(pipeline, stage, step, timestep, latents):
        record.setdefault("stages", set()).add((stage, latents.dtype))

    try:
        return video(PROMPT, height=64, width=64, preset="high", num_keyframes=2, num_inference_steps=2,
                     guidance_scale=GUIDANCE, generator=seeded(), callback_on_step_end=callback).frames  # (1, 17, ...)
    finally:
        for hook in hooks:
            hook.remove()


def run_image_mode(pipelines, mode: str) -> np.ndarray:
    _, image = pipelines
    inputs = {"text_to_image": {}, "image_to_image": {"image": PHOTO, "strength": 0.5},
              "inpainting": {"image": PHOTO, "mask_image": REPAINT}}[mode]
    return image(PROMPT, height=64, width=64, num_inference_steps=4, guidance_scale=GUIDANCE, output_type="np",
                 generator=seeded(), **inputs).images


def run_animation(pipelines) -> np.ndarray:
    """3 frames through the animation's Kandinsky callables: text-to-image, a warped frame, image-to-image."""
    text_to_image, image_to_image = kandinsky_callables(pipelines[1], 64, 64, steps=4, guidance_scale=GUIDANCE)
    spec = AnimationSpec(prompts=[PROMPT], durations=[0.375], fps=8, width=64, height=64, cadence=2,
                         zoom="0:(1.05)", denoise_strength="0:(0.5)")
    frames = []
    render_animation(spec, text_to_image, image_to_image, frames.append, progress=False)
    return np.stack(frames)


MODES = ("video", "text_to_image", "image_to_image", "inpainting", "animation")


def run(mode: str, pipelines, record: dict) -> np.ndarray:
    if mode == "video":
        return run_video(pipelines, record)
    return run_animation(pipelines) if mode == "animation" else run_image_mode(pipelines, mode)


@pytest.fixture(scope="module")
def reference(pipelines):
    """The fp32 outputs, once; and what crossed the fp32 video's model calls."""
    record = {}
    return {mode: run(mode, pipelines[torch.float32], record) for mode in MODES}, record


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_weights_load_in_the_requested_dtype_but_the_text_projection_stays_fp32(pipelines, dtype):
    video, image = pipelines[dtype]
    for model in (video.unet, video.interpolation_unet, video.movq, image.inpaint_unet):
        assert {parameter.dtype for parameter in model.parameters()} == {dtype}, type(model).__name__
    assert video.text_encoder.dtype == dtype
    for projection in (video.text_projection, image.inpaint_text_projection):
        assert {parameter.dtype for parameter in projection.parameters()} == {torch.float32}
        assert projection.dtype == torch.float32  # the bug: it reported null_embedding's dtype


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_half_precision_matches_fp32(pipelines, reference, dtype, mode, monkeypatch):
    noise = []  # the dtype of every noise draw of the pipelines: fp32, as in the fp32 run

    def recording_randn_video(shape, generator, device, draw_dtype):
        noise.append(draw_dtype)
        return randn_video(shape, generator, device, draw_dtype)

    for module in (pipeline_kandinsky_video, pipeline_kandinsky3_image):
        monkeypatch.setattr(module, "randn_video", recording_randn_video)
    record = {}
    out = run(mode, pipelines[dtype], record)
    assert noise and set(noise) == {torch.float32}
    expected = reference[0][mode]
    assert out.dtype == expected.dtype == np.float32 and out.shape == expected.shape
    error = np.abs(out - expected)
    most, mean = TOLERANCE[dtype]
    assert 0 < error.mean() <= mean and error.max() <= most, (error.max(), error.mean())  # > 0: it did run in half
    if mode == "video":
        fp32_calls = reference[1]
        # Every stage ran, with fp32 latents between steps; every model saw its own dtype.
        assert record["stages"] == {("keyframes", torch.float32), ("interpolation 1/2", torch.float32),
                                    ("interpolation 2/2", torch.float32)}
        for name in ("unet", "interpolation_unet", "movq"):
            assert {x.dtype for x in record[name]} == {dtype}, name
        # The same noise as the fp32 run: each stage's first model input is the fp32 one, rounded.
        for name in ("unet", "interpolation_unet"):
            assert torch.equal(record[name][0], fp32_calls[name][0].to(dtype)), name


def test_text_projection_casts_its_input():
    """Callers cannot feed it the wrong dtype: fp32 weights take half inputs, and half weights (a ``.to(dtype)``
    cast by hand) take fp32 ones."""
    torch.manual_seed(0)
    projection = TextProjection(16, 8).eval()
    hidden = torch.randn(2, 5, 16)
    with torch.no_grad():
        expected = projection(hidden.bfloat16().float())
        torch.testing.assert_close(projection(hidden.bfloat16()), expected, rtol=0, atol=0)
        assert projection.to(torch.bfloat16)(hidden).dtype == torch.bfloat16


def test_from_kandinsky3_in_bf16_keeps_the_exact_fp32_projection(tmp_path):
    kandinsky3 = tmp_path / "kandinsky-3"
    unet = tiny_kandinsky3_unet()
    unet.save_pretrained(kandinsky3 / "unet")
    tiny_tokenizer().save_pretrained(kandinsky3 / "tokenizer")
    tiny_t5_encoder().save_pretrained(kandinsky3 / "text_encoder")
    tiny_movq().save_pretrained(kandinsky3 / "movq")
    pipeline = KandinskyVideoPipeline.from_kandinsky3(kandinsky3, dtype=torch.bfloat16)
    assert pipeline.unet.dtype == pipeline.movq.dtype == pipeline.text_encoder.dtype == torch.bfloat16
    linear = pipeline.text_projection.linear.weight
    assert linear.dtype == torch.float32 and torch.equal(linear, unet.encoder_hid_proj.projection_linear.weight)
    pipeline.set_progress_bar_config(disable=True)
    frames = pipeline(PROMPT, height=64, width=64, num_keyframes=2, num_inference_steps=2, generator=seeded()).frames
    assert frames.shape == (1, 2, 64, 64, 3) and np.isfinite(frames).all()


def test_demo_model_generates_in_bf16_from_the_command_line(tmp_path):
    out = tmp_path / "demo.mp4"
    assert main(["generate", PROMPT, "--model", "demo", "-o", str(out), "--dtype", "bf16", "--device", "cpu",
                 "--preset", "low", "--keyframes", "2", "--steps", "2"]) == 0
    frames = iio.imread(out, index=None)
    assert frames.shape == (2, 64, 64, 3) and frames.std() > 10  # a picture, not a flat or black frame


# ---- training -------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state that refuses another precision; start and leave it clean."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_square_videos(tmp_path_factory.mktemp("videos"), count=1, num_frames=24)


def bf16_config(task: str, videos, folder, *overrides: str):
    return load_config(task, CONFIGS / f"tiny_{task}.yaml", [
        f"data.source={videos}", f"run.output_dir={folder}", "run.report_to=[]", "optim.mixed_precision=bf16",
        *overrides])


def state_of(module: nn.Module, skip: set[int]) -> dict[str, torch.Tensor]:
    return {key: tensor.detach().clone() for key, tensor in module.state_dict(keep_vars=True).items()
            if id(tensor) not in skip}


@pytest.mark.parametrize("task_name", ["keyframes", "interpolation", "decoder"])
def test_a_bf16_training_step(task_name, videos, tmp_path, fresh_accelerate_state):
    """Frozen models in bf16 (the projection fp32), trained weights fp32 under bf16 autocast; frozen weights kept."""
    config = bf16_config(task_name, videos, tmp_path)
    accelerator = Accelerator(mixed_precision=config.optim.mixed_precision)
    task = make_task(config)
    task.place(accelerator.device, frozen_dtype(accelerator), validating=False)
    frozen = {name: module for name, module in task.pipeline.components.items() if isinstance(module, nn.Module)}
    placed = list(task.needs_for_loss)  # the frozen models the loss runs
    if task_name == "decoder":  # a frozen copy of the MoVQ encodes
        frozen["encoder"] = task.encoder
        placed.append("encoder")
    for name in placed:
        expected = torch.float32 if name == "text_projection" else torch.bfloat16
        assert {parameter.dtype for parameter in frozen[name].parameters()} == {expected}, name
    trained = [parameter for parameter in task.model.parameters() if parameter.requires_grad]
    skip = {id(parameter) for parameter in trained}
    before = {name: state_of(module, skip) for name, module in frozen.items()}
    initial = [parameter.detach().clone() for parameter in trained]

    computed = set()  # output dtypes of the trained model's convs and linears
    hooks = [module.register_forward_hook(lambda m, args, out: computed.add(out.dtype))
             for module in task.model.modules() if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d))]
    model, optimizer = accelerator.prepare(task.model, torch.optim.AdamW(trained, lr=1e-3))
    dataset = TextVideoDataset(load_records(config.data.source), task.clip_spec(), config.data.resolution)
    batch = collate_clips([dataset[ClipKey(0, (0, 0))]])
    batch = {key: value.to(accelerator.device) if torch.is_tensor(value) else value for key, value in batch.items()}
    loss = task.loss(model, batch)
    accelerator.backward(loss)
    optimizer.step()
    for hook in hooks:
        hook.remove()

    assert torch.isfinite(loss) and computed == {torch.bfloat16}
    assert {parameter.dtype for parameter in trained} == {torch.float32}
    assert any(not torch.equal(parameter, start) for parameter, start in zip(trained, initial)), "nothing trained"
    for name, module in frozen.items():
        after = state_of(module, skip)
        changed = [key for key, tensor in before[name].items() if not torch.equal(tensor, after[key])]
        assert not changed, f"frozen {name} weights changed: {changed}"


def test_bf16_keyframe_run_validates_and_exports_fp32_weights(videos, tmp_path, fresh_accelerate_state):
    """The whole loop: a frozen bf16 text encoder and MoVQ beside the fp32 trained U-Net, also in validation."""
    export = train(bf16_config("keyframes", videos, tmp_path, "optim.steps=1", "optim.gradient_accumulation=1",
                               "run.validate_every=1", "run.validation_keyframes=2"))
    assert (tmp_path / "validation" / "step-00000001" / "00.mp4").is_file()
    loss = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["loss"]
    assert np.isfinite(loss)
    weights = load_file(export / "unet_temporal" / "temporal.safetensors")
    assert {tensor.dtype for tensor in weights.values()} == {torch.float32}


def test_fp16_training_on_the_cpu_is_refused_with_the_fix(videos, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is refused on the CPU only")
    config = load_config("keyframes", CONFIGS / "tiny_keyframes.yaml",  # loads anywhere: the machine decides later
                         [f"data.source={videos}", f"run.output_dir={tmp_path}", "run.report_to=[]",
                          "optim.mixed_precision=fp16"])
    with pytest.raises(ValueError, match=r"optim.mixed_precision=fp16 needs a CUDA GPU.*optim.mixed_precision=bf16"):
        train(config)
    assert not (tmp_path / "checkpoints").exists()  # refused before any work
