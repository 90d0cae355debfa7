"""``python -m kandinsky_video.training keyframes --config FILE [section.key=value ...]`` (= ``kandinsky-video train``)."""

import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))
