"""``kandinsky-video train decoder`` as a script: trains the MoVQ Video decoder (temporal layers or the whole decoder).

    python train/decoder.py --config configs/decoder.yaml [section.key=value ...]
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train/decoder.py --config ...
"""

import sys

from kandinsky_video.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "decoder", *sys.argv[1:]]))
