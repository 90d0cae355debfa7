"""The demo model: a tiny Kandinsky Video trained on a procedural world (:mod:`.world`) by :mod:`.recipe`, shipped
in ``weights/`` so every command works offline with ``--model demo``."""

from pathlib import Path

DEMO = "demo"  # the model name the commands accept
WEIGHTS = Path(__file__).resolve().parent / "weights"


def demo_weights() -> Path:
    """The shipped demo pipeline folder; a clear error where this install lacks it."""
    if not (WEIGHTS / "model_index.json").is_file():
        raise FileNotFoundError(
            f"the demo model is not in this install ({WEIGHTS} has no model_index.json). Reinstall the package from a "
            "full checkout, or train it yourself: python train/demo_recipe.py --out runs/demo --ship")
    return WEIGHTS
