"""Zero-shot UCF-101 (FVD, IS); arguments as ``kandinsky-video eval ucf101``. Shard generation with accelerate:

accelerate launch eval/ucf101.py --ucf101-root data/UCF-101 --samples-dir samples/ucf --model DIR --num-videos 2048
"""

import sys

from kandinsky_video.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", "ucf101", *sys.argv[1:]]))
