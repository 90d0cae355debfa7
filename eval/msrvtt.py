"""MSR-VTT CLIPSIM; arguments as ``kandinsky-video eval msrvtt``. Shard generation with accelerate:

accelerate launch eval/msrvtt.py --msrvtt-json test_videodatainfo.json --samples-dir samples/msrvtt --model DIR
"""

import sys

from kandinsky_video.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", "msrvtt", *sys.argv[1:]]))
