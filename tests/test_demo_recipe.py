"""The demo model's from-scratch tasks (movq, text_to_image) and its recipe, on a tiny demo world (CPU, seconds)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diffusers import VQModel
from safetensors import safe_open

from kandinsky_video.data import ClipSpec
from kandinsky_video.demo.recipe import (BASE, GENERATION, STAGES, TASK_OF, export_of, interpolation_scheduler,
                                         run_recipe, ship, stage_config)
from kandinsky_video.demo.world import Scene, write_world
from kandinsky_video.models import KandinskyTextEncoder
from kandinsky_video.pipelines import KandinskyVideoPipeline
from kandinsky_video.pipelines.loading import generation_defaults
from kandinsky_video.testing import tiny_tokenizer
from kandinsky_video.training import TextToImageModel, load_config, make_task, train
from kandinsky_video.training.config import CACHED
from kandinsky_video.training.tasks import size_config

COMMON = ["data.resolution=64", "data.num_workers=0", "run.report_to=[]", "run.log_every=1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    scenes = [Scene("circle", "red", "black", "moving right"), Scene("square", "blue", "white", "shrinking"),
              Scene("triangle", "yellow", "gray", "moving up")]
    return write_world(tmp_path_factory.mktemp("world"), scenes, frames=17)


@pytest.fixture(scope="module")
def movq_run(world, tmp_path_factory) -> Path:
    """A tiny MoVQ overfitted on the world's frames for 30 steps."""
    folder = tmp_path_factory.mktemp("movq")
    config = load_config("movq", None, [f"data.source={world}", f"run.output_dir={folder}", "model=tiny",
                                        "optim.steps=30", "optim.batch_size=4", "optim.gradient_accumulation=1",
                                        "optim.lr=2e-3", *COMMON])
    train(config)
    return folder


def losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_movq_learns_to_reconstruct_and_exports_a_vqmodel(movq_run, world):
    curve = losses(movq_run)
    assert len(curve) == 30
    assert sum(curve[-5:]) / 5 < 0.6 * sum(curve[:5]) / 5, f"reconstruction loss did not fall: {curve}"
    movq = VQModel.from_pretrained(movq_run / "export" / "movq")
    assert movq.config.norm_type == "spatial"
    frames = torch.rand(1, 3, 64, 64) * 2 - 1
    assert movq.decode(movq.encode(frames).latents, force_not_quantize=True).sample.shape == frames.shape


@pytest.mark.parametrize("task", ["movq", "decoder"])
def test_latent_noise_reaches_the_decoder_and_only_when_asked(task, world):
    """With ``latent_noise`` the same weights and batch give another loss on every call (fresh noise on the
    latents the decoder sees); without it the loss is a function of weights and batch."""
    base = [f"data.source={world}", "data.resolution=64", "model=tiny"]  # decoder: the tiny pipeline's MoVQ
    batch = {"video": torch.rand(2, 3, 2, 64, 64) * 2 - 1}
    for noise, stochastic in ((0.0, False), (0.5, True)):
        trainer = make_task(load_config(task, None, [*base, f"{task}.latent_noise={noise}"]))
        with torch.no_grad():
            first, second = (trainer.loss(trainer.model, batch) for _ in range(2))
        assert (first != second) == stochastic, f"{task}.latent_noise={noise}: losses {first} and {second}"
    with pytest.raises(ValueError, match="latent_noise"):
        load_config(task, None, [*base, f"{task}.latent_noise=-0.1"])


def test_text_to_image_first_frames_limits_where_frames_come_from(movq_run):
    movq = f"text_to_image.movq={movq_run / 'export' / 'movq'}"
    anywhere = make_task(load_config("text_to_image", None, ["model=tiny", movq, "data.source=x.csv"]))
    first = make_task(load_config("text_to_image", None, ["model=tiny", movq, "data.source=x.csv",
                                                           "text_to_image.first_frames=12"]))
    assert anywhere.clip_spec() == ClipSpec(1) and first.clip_spec() == ClipSpec(1, latest_start=11)
    mixed = make_task(load_config("text_to_image", None, ["model=tiny", movq, "data.source=x.csv",
                                                           "text_to_image.first_frames=12",
                                                           "text_to_image.first_frames_share=0.5"]))
    assert mixed.clip_spec() == ClipSpec(1, latest_start=11, latest_start_share=0.5)
    with pytest.raises(ValueError, match="first_frames"):
        load_config("text_to_image", None, [movq, "text_to_image.first_frames=-1"])
    with pytest.raises(ValueError, match="first_frames_share"):
        load_config("text_to_image", None, [movq, "text_to_image.first_frames_share=2"])


def test_cosine_learning_rate_schedule(world, tmp_path):
    config = load_config("movq", None, [f"data.source={world}", f"run.output_dir={tmp_path}", "model=tiny",
                                        "optim.steps=8", "optim.batch_size=2", "optim.lr=1e-3", "optim.warmup_steps=2",
                                        "optim.lr_schedule=cosine", *COMMON])
    train(config)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rates[1] == pytest.approx(1e-3)  # the end of warm-up
    assert all(later < earlier for earlier, later in zip(rates[1:], rates[2:])) and rates[-1] < 0.1e-3


def test_training_text_path_equals_the_pipeline_encoder():
    """TextToImageModel.encode_text (with gradients) builds exactly KandinskyTextEncoder.encode's context."""
    torch.manual_seed(0)
    model = TextToImageModel(unet_architecture=size_config("tiny", "unet"),
                             text_encoder_architecture=size_config("tiny", "text_encoder"))
    prompts = ["a red circle moving right on a black background", "a blue square"]
    with torch.no_grad():
        model.text_projection.null_embedding.normal_()
    text = KandinskyTextEncoder(tiny_tokenizer(), model.text_encoder, model.text_projection)
    released = text.encode(prompts)
    model.requires_grad_(True)  # KandinskyTextEncoder froze the modules it was given
    tokens = text.tokenize(prompts)
    with torch.no_grad():  # the same code path: bit-identical
        context, mask = model.encode_text(tokens.input_ids, tokens.attention_mask)
    torch.testing.assert_close(context, released.context, rtol=0, atol=0)
    torch.testing.assert_close(mask, released.mask, rtol=0, atol=0)
    context, mask = model.encode_text(tokens.input_ids, tokens.attention_mask)  # with autograd: other CPU kernels
    torch.testing.assert_close(context, released.context, rtol=1e-4, atol=1e-5)
    assert context.requires_grad and torch.equal(mask, released.mask)
    # The training forward reaches the encoder, the projection and (for dropped captions) the null embedding.
    latents = torch.randn(2, 4, 8, 8)
    drop = torch.tensor([True, False])
    model(latents, torch.tensor([10, 500]), tokens.input_ids, tokens.attention_mask, drop).pow(2).mean().backward()
    for name in ("text_encoder.shared.weight", "text_projection.linear.weight", "text_projection.null_embedding"):
        assert model.get_parameter(name).grad.abs().sum() > 0, f"{name} gets no gradient"


def test_text_to_image_cache_gives_the_same_run_and_is_reused(movq_run, world, tmp_path, monkeypatch):
    """The base's frozen MoVQ latents come from data.cache_dir when set: the same losses and weights, and a second
    run over the same frames encodes nothing."""
    from kandinsky_video.training import tasks as tasks_module

    encoded = []  # frames per MoVQ encode
    encode_video = tasks_module.encode_video

    def counted(movq, video):
        encoded.append(len(video))
        return encode_video(movq, video)

    monkeypatch.setattr(tasks_module, "encode_video", counted)

    def run(folder: str, *cache: str) -> tuple[list[float], dict]:
        export = train(load_config("text_to_image", None, [
            f"data.source={world}", f"run.output_dir={tmp_path / folder}", "model=tiny", "optim.steps=3",
            "optim.batch_size=2", "optim.gradient_accumulation=1", f"text_to_image.movq={movq_run / 'export' / 'movq'}",
            *cache, *COMMON]))
        with safe_open(export / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors", "pt") as weights:
            return losses(tmp_path / folder), {key: weights.get_tensor(key) for key in weights.keys()}

    plain = run("plain")
    assert sum(encoded) == 6
    encoded.clear()
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    cached = run("cached", cache)
    entries = len(list((tmp_path / "cache" / "latents").rglob("*.safetensors")))
    assert sum(encoded) == entries and 0 < entries <= 6  # frames drawn twice are encoded once
    assert cached[0] == plain[0] and all(torch.equal(cached[1][key], plain[1][key]) for key in plain[1])
    encoded.clear()
    again = run("again", cache)
    assert sum(encoded) == 0 and again[0] == plain[0]


def test_text_to_image_resumes_and_exports_a_pipeline_that_generates(movq_run, world, tmp_path):
    settings = [
        f"data.source={world}", f"run.output_dir={tmp_path}", "model=tiny", "optim.batch_size=2",
        "optim.gradient_accumulation=1", "optim.lr=1e-3", "text_to_image.uncond_prob=0.5", "run.checkpoint_every=2",
        f"text_to_image.movq={movq_run / 'export' / 'movq'}", "text_to_image.sample_range=2.5", *COMMON,
    ]
    train(load_config("text_to_image", None, [*settings, "optim.steps=2"]))
    export = train(load_config("text_to_image", None, [*settings, "optim.steps=4"])) / "pipeline"  # resumes at 2
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    pipeline = KandinskyVideoPipeline.from_pretrained(export)
    pipeline.set_progress_bar_config(disable=True)
    assert pipeline.text_projection.null_embedding.abs().sum() > 0, "the null embedding did not learn"
    assert not any(name.startswith("spatial.") for name in pipeline.unet.temporal_state_dict())
    assert pipeline.scheduler.config.sample_range == 2.5  # the MoVQ's latent range goes with the base
    video = pipeline("a red circle moving right on a black background", height=64, width=64, preset="low",
                     num_keyframes=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert video.frames.shape == (1, 2, 64, 64, 3)


def test_text_to_image_init_from_trains_on_from_a_given_base(movq_run, world, tmp_path):
    """``text_to_image.init_from``: the model starts as that base (U-Net, T5, projection), not from the seeded init;
    a base of another size, or a folder without a pipeline, is refused with the fix named."""
    settings = [f"data.source={world}", "model=tiny", "optim.batch_size=2", "optim.gradient_accumulation=1",
                f"text_to_image.movq={movq_run / 'export' / 'movq'}", *COMMON]

    def model(*extra: str) -> TextToImageModel:
        return make_task(load_config("text_to_image", None, [*settings, *extra])).model

    trained = train(load_config("text_to_image", None, [*settings, f"run.output_dir={tmp_path}", "optim.steps=2"]))
    base = KandinskyVideoPipeline.from_pretrained(trained / "pipeline")
    continued, fresh = model(f"text_to_image.init_from={trained / 'pipeline'}"), model()
    for name, part in (("unet", base.unet.spatial), ("text_encoder", base.text_encoder),
                       ("text_projection", base.text_projection)):
        weights, fresh_weights = getattr(continued, name).state_dict(), getattr(fresh, name).state_dict()
        assert all(torch.equal(weights[key], value) for key, value in part.state_dict().items()), name
        assert any(not torch.equal(fresh_weights[key], value) for key, value in part.state_dict().items()), name
    with pytest.raises(ValueError, match="another architecture.*set model="):
        model(f"text_to_image.init_from={trained / 'pipeline'}", "model=demo")
    with pytest.raises(FileNotFoundError, match="holds no pipeline"):
        model(f"text_to_image.init_from={tmp_path}")


def test_from_scratch_configs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="text_to_image.movq is empty"):
        load_config("text_to_image", None, [])
    with pytest.raises(ValueError, match="starts from scratch"):
        load_config("movq", None, ["model=some/folder"])
    with pytest.raises(ValueError, match="validate_every"):
        load_config("movq", None, ["run.validate_every=10"])
    with pytest.raises(ValueError, match="sample_range=0.0 must be > 0"):
        load_config("text_to_image", None, [f"text_to_image.movq={tmp_path}", "text_to_image.sample_range=0"])
    config = load_config("text_to_image", None, [f"text_to_image.movq={tmp_path}", "data.source=x.csv"])
    with pytest.raises(FileNotFoundError):
        train(config)


TINY_STAGES = {
    "movq": {"model": "tiny", "optim": {"steps": 4, "batch_size": 2}},
    "text_to_image": {"model": "tiny", "optim": {"steps": 4, "batch_size": 2}, "text_to_image": {"sample_range": 2.5}},
    "text_to_image_continued": {"model": "tiny", "optim": {"steps": 2, "batch_size": 2, "lr": 1e-2},
                                "text_to_image": {"sample_range": 2.5}},
    "keyframes": {"optim": {"steps": 2}, "keyframes": {"num_frames": 2, "frame_stride": 4}},
    "interpolation": {"optim": {"steps": 2}, "interpolation": {"frames_between": 1, "num_groups": 2, "max_skip": 2}},
    "decoder": {"optim": {"steps": 2}, "decoder": {"num_frames": 2}},
}


def tiny_configs(folder: Path) -> Path:
    for stage, settings in TINY_STAGES.items():
        task = TASK_OF.get(stage, stage)
        cache = {"cache_dir": "runs/demo/cache"} if task in CACHED else {}  # the recipe sets the path
        config = {"task": task, "data": {"resolution": 64, "num_workers": 0, **cache},
                  "run": {"report_to": [], "checkpoint_every": 2}, **settings}
        config["optim"] = {"gradient_accumulation": 1, **settings["optim"]}
        (folder / f"{stage}.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_recipe_runs_every_stage_then_skips_finished_ones(world, tmp_path):
    (tmp_path / "configs").mkdir()
    configs = tiny_configs(tmp_path / "configs")
    out = tmp_path / "run"

    def config_of(stage: str) -> dict:
        return yaml.safe_load((out / stage / "config.yaml").read_text())

    first = run_recipe(out, max_steps_scale=0.5, configs=configs, data=world)
    assert first.trained == list(STAGES) and not first.skipped
    assert all(export_of(out, stage).exists() for stage in STAGES)
    assert json.loads((out / "movq" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2  # 4 steps x 0.5
    # The stages that cache latents share one cache in the run folder (their configs' path is the recipe's to set).
    cached = [stage for stage in STAGES if TASK_OF.get(stage, stage) in CACHED]
    assert {config_of(stage)["data"]["cache_dir"] for stage in cached} == {str(out / "cache")}
    # Stage 3 trains on from stage 2's base; the later stages and the assembled pipeline hold stage 3's.
    assert config_of("text_to_image_continued")["text_to_image"]["init_from"] == str(export_of(out, "text_to_image"))
    later = ("keyframes", "interpolation", "decoder")
    assert {config_of(stage)["model"] for stage in later} == {str(export_of(out, BASE))}
    assert len(list((out / "cache" / "latents").rglob("*.safetensors"))) > 0
    pipeline = KandinskyVideoPipeline.from_pretrained(first.pipeline)
    pipeline.set_progress_bar_config(disable=True)
    video = pipeline("a red circle moving right on a black background", height=64, width=64, preset="medium",
                     num_keyframes=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert video.frames.shape == (1, 3, 64, 64, 3)  # 2 keyframes + 1 interpolated frame
    assert pipeline.scheduler.config.sample_range == 2.5  # the base's, from its config
    weights = {stage: KandinskyVideoPipeline.from_pretrained(export_of(out, stage)).unet.spatial.state_dict()
               for stage in ("text_to_image", BASE)}
    for name, tensor in pipeline.unet.spatial.state_dict().items():
        assert torch.equal(tensor, weights[BASE][name]), name
    assert any(not torch.equal(weights[BASE][name], tensor) for name, tensor in weights["text_to_image"].items())
    assert pipeline.interpolation_scheduler.config.prediction_type == "v_prediction"

    # Shipping: an fp16 copy (half the bytes) with the generation defaults, loading back in fp32 to the same video.
    shipped = ship(out, tmp_path / "shipped")
    assert generation_defaults(shipped) == GENERATION
    for name in ("unet", "interpolation_unet", "movq"):  # (T5's `wo` and the text projection stay fp32, by design)
        with safe_open(shipped / name / "diffusion_pytorch_model.safetensors", "pt") as weights:
            assert {weights.get_slice(key).get_dtype() for key in weights.keys()} == {"F16"}, name
    reloaded = KandinskyVideoPipeline.from_pretrained(shipped, dtype=torch.float32)
    reloaded.set_progress_bar_config(disable=True)
    again = reloaded("a red circle moving right on a black background", height=64, width=64, preset="medium",
                     num_keyframes=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    difference = np.abs(again.frames - video.frames)
    assert difference.mean() < 0.005 and difference.max() < 0.05  # fp16 rounding of the weights, nothing more

    second = run_recipe(out, max_steps_scale=0.5, configs=configs, data=world)
    assert second.trained == [] and second.skipped == list(STAGES)
    # Another step count is another config: only that stage (and nothing finished) runs again.
    third = run_recipe(out, until="movq", max_steps_scale=1.0, configs=configs, data=world,
                       overrides={"movq": ["optim.steps=2"]})
    assert third.skipped == ["movq"] and third.pipeline is None

    with pytest.raises(ValueError, match="unknown stage 'keyframe'.*movq, text_to_image"):
        run_recipe(out, until="keyframe", configs=configs, data=world)


def test_the_interpolation_stage_trains_on_what_the_demo_sampler_asks_of_it(tmp_path):
    """The demo samples in-betweens in GENERATION's steps from clean keyframes, guided only if its scale is not 0;
    its stage must train at those timesteps, at p = 0, and spend no batch on an unused unconditional branch (each
    mismatch cost shape: docs/demo.md, "The interpolation U-Net trained on what it is asked")."""
    method = stage_config("interpolation", tmp_path, tmp_path / "manifest.jsonl").interpolation
    sampler = interpolation_scheduler()
    sampler.set_timesteps(GENERATION["interpolation_steps"])
    assert min(sampler.timesteps.tolist()) >= method.min_timestep
    assert method.max_perturbation == 0
    assert (method.uncond_prob > 0) == (GENERATION["interpolation_guidance_scale"] != 0)
