"""``kandinsky-video train keyframes|interpolation|decoder --config FILE [section.key=value ...]``."""

import argparse

from .config import TASKS, config_yaml, load_config

DESCRIPTIONS = {
    "keyframes": "the keyframe U-Net's temporal blocks (Kandinsky 3.0 frozen); epsilon loss, 10% caption dropout",
    "interpolation": "the whole interpolation U-Net; v-prediction with skip and keyframe-perturbation conditions",
    "decoder": "MoVQ Video's temporal layers or whole decoder (encoder frozen); L1/L2 reconstruction",
    "movq": "a MoVQ image autoencoder from scratch on single frames (the demo model); L1 (+ L2) reconstruction",
    "text_to_image": "a text-to-image base from scratch (U-Net + T5 + projection, frozen trained MoVQ; the demo "
                     "model); epsilon loss, 10% caption dropout; exports a KandinskyVideoPipeline folder",
}


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` with one sub-command per task to a ``kandinsky-video`` sub-parser set."""
    train = subparsers.add_parser(
        "train", help="train the keyframe, interpolation, decoder, MoVQ or text-to-image model",
        description="Train on text-video pairs with accelerate (run under `accelerate launch` for several GPUs). "
        "Settings come from a YAML file (see configs/) and section.key=value overrides; the newest checkpoint in "
        "run.output_dir is resumed automatically.",
    )
    tasks = train.add_subparsers(dest="task", required=True, metavar="{" + ",".join(TASKS) + "}")
    for task in TASKS:
        # help strings are %-formatted by argparse, descriptions are not
        parser = tasks.add_parser(task, help=DESCRIPTIONS[task].replace("%", "%%"),
                                  description=f"Train {DESCRIPTIONS[task]}.")
        parser.add_argument("--config", help=f"YAML config (e.g. configs/{task}.yaml); defaults apply without one")
        parser.add_argument("--print-config", action="store_true",
                            help="check and print the resolved config, then exit")
        parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                            help="after --config, e.g. optim.lr=2e-4 data.num_workers=8")
    train.set_defaults(run=run_train)
    return train


def run_train(args: argparse.Namespace) -> None:
    config = load_config(args.task, args.config, args.overrides)  # every key and value checked before any work
    if args.print_config:
        print(config_yaml(config), end="")
        return
    from .loop import train

    print(f"exported the trained weights to {train(config)}")
