"""``kandinsky-video train keyframes`` as a script: trains the keyframe U-Net's temporal blocks (Kandinsky 3.0 frozen).

    python train/keyframes.py --config configs/keyframes.yaml [section.key=value ...]
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train/keyframes.py --config ...
"""

import sys

from kandinsky_video.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "keyframes", *sys.argv[1:]]))
