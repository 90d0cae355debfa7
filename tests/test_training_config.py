"""Training configuration and the `train` command: every bad key or value fails before any work starts."""

import argparse
from pathlib import Path

import pytest

from kandinsky_video.training import load_config, save_config, train
from kandinsky_video.cli import main
from kandinsky_video.training.cli import add_train_parser
from kandinsky_video.training.config import TASKS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_configs_load(path):
    task = next(task for task in TASKS if task in path.stem)
    config = load_config(task, path)
    assert config.task == task and getattr(config, task) is not None


@pytest.mark.parametrize("path", sorted((CONFIGS / "accelerate").glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_accelerate_configs_parse(path):
    from accelerate.commands.config.config_args import load_config_from_file

    assert load_config_from_file(str(path)).num_processes == 8


def test_paper_recipe():
    config = load_config("keyframes", CONFIGS / "keyframes.yaml")
    assert (config.data.resolution, config.optim.batch_size, config.optim.gradient_accumulation) == (512, 1, 2)
    assert (config.optim.lr, config.optim.mixed_precision, config.optim.steps) == (1e-4, "bf16", 100_000)
    assert (config.keyframes.num_frames, config.keyframes.frame_stride, config.keyframes.uncond_prob) == (16, 12, 0.1)


def test_overrides_are_typed_and_saved_config_loads_back(tmp_path):
    config = load_config("interpolation", CONFIGS / "tiny_interpolation.yaml",
                         ["optim.lr=2e-4", "run.validation_prompts=[a cat, a dog]", "optim.gradient_checkpointing=true",
                          "model=/some/folder", "data.num_workers=3"])
    assert config.optim.lr == 2e-4 and config.run.validation_prompts == ["a cat", "a dog"]
    assert config.optim.gradient_checkpointing is True and config.model == "/some/folder"
    assert load_config("interpolation", save_config(config, tmp_path)) == config


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1e-4", "unknown config key 'optim.lrr'; did you mean 'optim.lr'"),
    ("data.resolutoin=64", "did you mean 'data.resolution'"),
    ("optim.lr=fast", "optim.lr must be a float, got 'fast'"),
    ("optim.steps=1.5", "optim.steps must be an int"),
    ("optim.steps=0", r"optim.steps=0 must be > 0"),
    ("optim.mixed_precision=bf32", r"choose one of \('no', 'bf16', 'fp16'\)"),
    ("optim.ema_decay=1.5", r"optim.ema_decay=1.5 must be in \[0, 1\)"),
    ("optim.lr_schedule=linear", r"choose one of \('constant', 'cosine'\)"),
    ("data.resolution=100", "multiple of 8"),
    ("data.resolution=96", "U-Nets need a multiple of 64"),
    ("keyframes.uncond_prob=2", "probability"),
    ("decoder.loss=l1", "section 'decoder' is for `train decoder`"),
    ("run.report_to=[mlflow]", "choose from"),
    ("optim.lr", "must look like section.key=value"),
])
def test_bad_overrides_raise_with_the_fix(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("keyframes", CONFIGS / "tiny_keyframes.yaml", [override])


@pytest.mark.parametrize("override, message", [
    ("interpolation.min_timestep=1000", "interpolation.min_timestep=1000 must be below 1000"),
    ("interpolation.max_perturbation=1000", "interpolation.max_perturbation=1000 must be below 1000"),
    ("interpolation.image_conv_on=right_keyframe", r"choose one of \('first_noisy', 'left_keyframe'\)"),
])
def test_bad_interpolation_settings_raise_with_the_fix(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("interpolation", CONFIGS / "tiny_interpolation.yaml", [override])


def test_bad_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="configs/"):
        load_config("keyframes", tmp_path / "missing.yaml")
    (tmp_path / "a.yaml").write_text("task: decoder\n")
    with pytest.raises(ValueError, match="run `kandinsky-video train decoder`"):
        load_config("keyframes", tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("optim:\n  lr: 1e-4\n  stpes: 3\n")
    with pytest.raises(ValueError, match="did you mean 'optim.steps'"):
        load_config("keyframes", tmp_path / "b.yaml")
    with pytest.raises(ValueError, match="3 odd sizes"):
        load_config("decoder", None, ["decoder.temporal_kernel_size=[3, 2, 2]"])
    (tmp_path / "c.yaml").write_text("interpolation:\n  max_skip: 30\n")
    with pytest.raises(ValueError, match="train interpolation"):
        load_config("decoder", tmp_path / "c.yaml")


def test_missing_data_fails_before_any_work(tmp_path):
    config = load_config("keyframes", CONFIGS / "tiny_keyframes.yaml",
                         [f"data.source={tmp_path / 'nope.csv'}", f"run.output_dir={tmp_path / 'run'}"])
    with pytest.raises(FileNotFoundError, match="data.source"):
        train(config)
    (tmp_path / "data.csv").write_text("video,caption\nx.mp4,a cat\n")
    for model, message in ((tmp_path / "no-such-folder", "neither a folder nor a hub id"), (tmp_path, "model_index")):
        config = load_config("keyframes", CONFIGS / "tiny_keyframes.yaml", [
            f"data.source={tmp_path / 'data.csv'}", f"run.output_dir={tmp_path / 'run'}", f"model={model}"])
        with pytest.raises(FileNotFoundError, match=message):
            train(config)
    assert not (tmp_path / "run").exists()


def test_cli_parses_and_reports_errors(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="kandinsky-video")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", "decoder", "--config", "c.yaml", "optim.lr=1e-3", "run.log_every=5"])
    assert (args.task, args.config, args.overrides) == ("decoder", "c.yaml", ["optim.lr=1e-3", "run.log_every=5"])
    assert main(["train", "keyframes", "--config", str(CONFIGS / "tiny_keyframes.yaml"), "optim.btach_size=2"]) == 2
    assert "did you mean 'optim.batch_size'" in capsys.readouterr().err
    assert main(["train", "decoder", "--print-config", "decoder.loss=l1"]) == 0
    assert "loss: l1" in capsys.readouterr().out
