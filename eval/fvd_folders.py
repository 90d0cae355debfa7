"""FVD (and IS / CLIPSIM) between two video folders; arguments as ``kandinsky-video eval folders``.

python eval/fvd_folders.py --real data/UCF-101 --fake samples/ucf --max-real 2048 --output results/
"""

import sys

from kandinsky_video.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", "folders", *sys.argv[1:]]))
