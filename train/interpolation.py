"""``kandinsky-video train interpolation`` as a script: trains the interpolation U-Net (the whole model).

    python train/interpolation.py --config configs/interpolation.yaml [section.key=value ...]
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train/interpolation.py --config ...
"""

import sys

from kandinsky_video.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "interpolation", *sys.argv[1:]]))
