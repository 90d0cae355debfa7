"""The Gradio page: lays out components and wires them to :mod:`kandinsky_video.app.handlers`; nothing else."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no analytics, before gradio is imported

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from ..animation.spec import MOTION_PRESETS  # noqa: E402
from ..pipelines.pipeline_kandinsky_video import PRESETS  # noqa: E402
from . import handlers  # noqa: E402
from .handlers import Limits, ModelHolder, Outputs  # noqa: E402


def user_errors(function):
    """Show a handler's ValueError / FileNotFoundError in the page, as written."""

    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(str(error)) from error

    wrapped.__name__ = function.__name__
    return wrapped


def split_editor(value: dict | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """ImageEditor value -> (RGB image, mask painted on it: 255 = repaint, or None when nothing was painted)."""
    if not value or value.get("background") is None:
        return None, None
    background = np.asarray(value["background"])[..., :3]
    painted = [np.asarray(layer)[..., 3] for layer in value.get("layers") or [] if layer is not None]
    mask = np.max(painted, axis=0) if painted else None
    return background, (mask > 0).astype(np.uint8) * 255 if mask is not None and mask.any() else None


def build_app(holder: ModelHolder, outputs: Outputs, limits: Limits = Limits(), size: int | None = None) -> gr.Blocks:
    """The page; its initial values are the model folder's generation defaults where it has them (the demo's)."""
    defaults = {"height": 512, "preset": "low", "num_keyframes": 15, "num_inference_steps": 50, "guidance_scale": 5.0,
                "interpolation_guidance_scale": 0.25, **holder.defaults}
    size = size or defaults["height"]
    # delete_cache: Gradio's own copies of served files go after an hour (checked every 10 minutes).
    with gr.Blocks(title="Kandinsky Video", delete_cache=(600, 3600)) as app:
        gr.Markdown(f"# Kandinsky Video\nModel: `{holder.model}` on {holder.device}. One generation runs at a time.")
        with gr.Tab("Text to video"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(label="Prompt", max_length=limits.max_prompt_chars, elem_id="t2v-prompt")
                    negative = gr.Textbox(label="Negative prompt", max_length=limits.max_prompt_chars)
                    with gr.Row():
                        height = gr.Slider(limits.min_size, limits.max_size, value=size, step=64, label="Height")
                        width = gr.Slider(limits.min_size, limits.max_size, value=size, step=64, label="Width")
                    preset = gr.Radio(list(PRESETS), value=defaults["preset"], label="Preset (low: keyframes; medium / high: interpolated)")
                    keyframes = gr.Slider(2, 32, value=defaults["num_keyframes"], step=1, label="Keyframes")
                    steps = gr.Slider(1, limits.max_steps, value=defaults["num_inference_steps"], step=1, label="Steps")
                    guidance = gr.Slider(0, 15, value=defaults["guidance_scale"], step=0.25, label="Guidance scale (keyframes)")
                    interpolation_guidance = gr.Slider(0, 5, value=defaults["interpolation_guidance_scale"], step=0.05, label="Guidance scale (interpolation)")
                    seed = gr.Textbox(label="Seed (empty: random)", elem_id="t2v-seed")
                    fps = gr.Number(label="Frame rate (0: real-time motion)", value=0)
                    with gr.Row():
                        run = gr.Button("Generate", variant="primary", elem_id="t2v-generate")
                        stop = gr.Button("Cancel")
                with gr.Column():
                    video = gr.Video(label="Video", elem_id="t2v-video")
                    files = gr.File(label="Downloads (mp4, gif)", file_count="multiple")
                    used_seed = gr.Number(label="Seed used", precision=0)

            def text_to_video(prompt, negative, height, width, preset, keyframes, steps, guidance,
                              interpolation_guidance, seed, fps, progress=gr.Progress()):
                mp4, gif, used = handlers.text_to_video(
                    holder, outputs, prompt, negative, height, width, preset, keyframes, steps, guidance,
                    interpolation_guidance, seed, fps or None, limits, lambda done, stage: progress(done, desc=stage))
                return mp4, [mp4, gif], used

            event = run.click(user_errors(text_to_video),
                              [prompt, negative, height, width, preset, keyframes, steps, guidance,
                               interpolation_guidance, seed, fps], [video, files, used_seed], api_name="text_to_video")
            stop.click(None, cancels=[event])

        with gr.Tab("Animation"):
            with gr.Row():
                with gr.Column():
                    animation_prompts = gr.Textbox(label="Prompts, one per line: 'prompt | seconds'", lines=3,
                                                   value="a lighthouse on a cliff at dusk | 2")
                    motion = gr.Dropdown(["none", *sorted(MOTION_PRESETS)], value="zoomin", label="Motion preset")
                    schedules = gr.Textbox(label="Schedules, one per line: name=schedule (e.g. zoom=0:(1.02))", lines=2)
                    mode = gr.Radio(["2D", "3D"], value="3D", label="Warp")
                    denoise = gr.Slider(0.0, 1.0, value=0.13, step=0.01,
                                        label="Denoise strength per frame (fraction of the schedule re-run)")
                    cadence = gr.Slider(1, 8, value=2, step=1, label="Cadence (diffuse every N-th frame)")
                    animation_fps = gr.Slider(1, 30, value=12, step=1, label="Frames per second")
                    animation_size = gr.Slider(limits.min_size, limits.max_size, value=size, step=64, label="Size")
                    animation_steps = gr.Slider(1, limits.max_steps, value=defaults["num_inference_steps"], step=1, label="Steps (full text-to-image)")
                    animation_seed = gr.Textbox(label="Seed (empty: random)")
                    animation_run = gr.Button("Animate", variant="primary")
                with gr.Column():
                    animation = gr.Video(label="Animation")
                    animation_used_seed = gr.Number(label="Seed used", precision=0)

            def make_animation(*values):
                return handlers.animate(holder, outputs, *values, limits=limits)

            animation_run.click(user_errors(make_animation),
                                [animation_prompts, motion, schedules, mode, denoise, cadence, animation_fps,
                                 animation_size, animation_steps, animation_seed],
                                [animation, animation_used_seed], api_name="animate")

        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column():
                    image_prompt = gr.Textbox(label="Prompt", max_length=limits.max_prompt_chars)
                    image_negative = gr.Textbox(label="Negative prompt", max_length=limits.max_prompt_chars)
                    editor = gr.ImageEditor(label="Input image (optional; paint over it to inpaint)", type="numpy")
                    strength = gr.Slider(0.05, 1.0, value=0.3, step=0.05, label="Denoising strength (image-to-image)")
                    with gr.Row():
                        image_height = gr.Slider(limits.min_size, limits.max_size, value=size, step=64, label="Height")
                        image_width = gr.Slider(limits.min_size, limits.max_size, value=size, step=64, label="Width")
                    image_steps = gr.Slider(1, limits.max_steps, value=defaults["num_inference_steps"], step=1, label="Steps")
                    image_seed = gr.Textbox(label="Seed (empty: random)")
                    image_run = gr.Button("Generate", variant="primary")
                with gr.Column():
                    picture = gr.Image(label="Image", type="filepath")
                    image_used_seed = gr.Number(label="Seed used", precision=0)

            def make_image(prompt, negative, editor, strength, height, width, steps, seed):
                init, mask = split_editor(editor)
                path, used = handlers.image(holder, outputs, prompt, negative, init, strength, mask, height, width,
                                            steps, None, seed, limits)
                return path, used

            image_run.click(user_errors(make_image), [image_prompt, image_negative, editor, strength, image_height,
                                                      image_width, image_steps, image_seed],
                            [picture, image_used_seed], api_name="image")
    # One generation on the device at a time; others wait in a line of bounded length.
    app.queue(default_concurrency_limit=1, max_size=limits.max_queue)
    return app


def launch(model: str, host: str = "127.0.0.1", port: int | None = None, device: str = "cpu", dtype=None,
           share: bool = False, size: int | None = None) -> None:
    """Start the app; it binds to the loopback interface unless told otherwise and never shares by default."""
    import torch

    holder = ModelHolder(model, device, dtype or torch.float32)
    outputs = Outputs()
    try:
        build_app(holder, outputs, size=size).launch(server_name=host, server_port=port, share=share,
                                                     allowed_paths=[str(outputs.root)])
    finally:
        outputs.cleanup()
