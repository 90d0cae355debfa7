"""Train the demo model (kandinsky_video/demo/recipe.py): demo-world data, then the six stages of configs/demo/,
then one pipeline folder. A rerun skips finished stages and resumes an interrupted one.

    python train/demo_recipe.py --out runs/demo                       # the whole recipe (~3.5 h on 2 CPU cores)
    python train/demo_recipe.py --out runs/demo_check --max-steps-scale 0.01   # a quick end-to-end check
    python train/demo_recipe.py --out runs/demo --until movq          # stage 1 only
"""

from kandinsky_video.demo.recipe import main

if __name__ == "__main__":
    main()
