"""The animation's image model: Kandinsky 3 text-to-image and image-to-image from :class:`Kandinsky3ImagePipeline`."""

from collections.abc import Callable

import numpy as np
import torch

from ..pipelines.pipeline_kandinsky3_image import Kandinsky3ImagePipeline


def kandinsky_callables(
    pipeline: Kandinsky3ImagePipeline, height: int, width: int, steps: int = 50, guidance_scale: float = 3.0,
    negative_prompt: str | None = None,
) -> tuple[Callable[[str, int], np.ndarray], Callable[[np.ndarray, str, float, int], np.ndarray]]:
    """(text_to_image, image_to_image) as :func:`render_animation` takes them: frames (H, W, 3) float32 in [0, 1]."""

    def run(prompt: str, seed: int, **inputs) -> np.ndarray:
        return pipeline(prompt, negative_prompt=negative_prompt, height=height, width=width, num_inference_steps=steps,
                        guidance_scale=guidance_scale, generator=torch.Generator("cpu").manual_seed(seed),
                        output_type="np", **inputs).images[0].astype(np.float32)

    def text_to_image(prompt: str, seed: int) -> np.ndarray:
        return run(prompt, seed)

    def image_to_image(image: np.ndarray, prompt: str, denoise_strength: float, seed: int) -> np.ndarray:
        if denoise_strength <= 0:  # nothing to re-run: the repaired warp is the frame
            return image
        return run(prompt, seed, image=image, strength=min(float(denoise_strength), 1.0))

    return text_to_image, image_to_image
