"""The web app: handlers as plain functions, the Gradio app through gradio_client, and one real-browser run."""

import shutil
import socket

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from kandinsky_video.app import handlers
from kandinsky_video.app.handlers import Limits, ModelHolder, Outputs

FAST = dict(height=64, width=64, keyframes=4, steps=2)


@pytest.fixture(scope="module")
def holder(tiny_model_dir):
    return ModelHolder(str(tiny_model_dir))


@pytest.fixture
def outputs():
    folder = Outputs()
    yield folder
    folder.cleanup()
    assert not folder.root.exists()


def test_text_to_video_handler(holder, outputs):
    mp4, gif, seed = handlers.text_to_video(holder, outputs, "a red circle", preset="medium", seed=7, **FAST)
    assert seed == 7 and str(outputs.root) in mp4
    assert iio.imread(mp4, index=None).shape == (13, 64, 64, 3)
    assert iio.imread(gif, index=None).shape[:3] == (13, 64, 64)
    again, _, _ = handlers.text_to_video(holder, outputs, "a red circle", preset="medium", seed=7, **FAST)
    np.testing.assert_array_equal(iio.imread(again, index=None), iio.imread(mp4, index=None))
    _, _, random_seed = handlers.text_to_video(holder, outputs, "a red circle", seed="", **FAST)
    assert isinstance(random_seed, int)
    assert holder.video is holder.video  # loaded once, kept


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prompt=""), "Enter a prompt"),
        (dict(prompt="x" * 501), "limit is 500"),
        (dict(height=100), "multiple of 64"),
        (dict(width=2048), "multiple of 64 from 64 to 1024"),
        (dict(steps=1000), "between 1 and 100"),
        (dict(preset="ultra"), "Unknown preset"),
        (dict(preset="high", keyframes=32), "the limit is 300"),
        (dict(negative_prompt="x" * 501), "The negative prompt has 501 characters; the limit is 500"),
        (dict(fps=-5), "The frame rate must be a finite number above 0 and at most 1000, got -5"),
        (dict(fps=float("inf")), "The frame rate must be a finite number above 0 and at most 1000, got inf"),
        (dict(guidance_scale=float("nan")), "The guidance scale must be a finite number from 0 to 100, got nan"),
        (dict(interpolation_guidance_scale=-1), "The interpolation guidance scale must be a finite number from 0"),
        (dict(keyframes=2.5), "Keyframes must be a whole number from 1 to 256, got 2.5"),
        (dict(seed=-1), "The seed must be a whole number from 0 to 18446744073709551615, got -1"),
        (dict(seed="nan"), "The seed must be a whole number from 0 to 18446744073709551615, got nan"),
        (dict(seed="twelve"), "The seed must be a whole number from 0 to 18446744073709551615, got 'twelve'"),
        (dict(height=float("nan")), "The height must be a whole number from 64 to 4096, got nan"),
    ],
)
def test_limits_are_enforced_on_the_server(holder, outputs, kwargs, message):
    arguments = {"prompt": "a red circle", **FAST, **kwargs}
    with pytest.raises(ValueError, match=message):
        handlers.text_to_video(holder, outputs, **arguments)


def test_image_handler(holder, outputs):
    path, seed = handlers.image(holder, outputs, "a red circle", height=64, width=64, steps=2, seed=3)
    assert Image.open(path).size == (64, 64) and seed == 3
    init = np.asarray(Image.open(path))
    path, _ = handlers.image(holder, outputs, "a red circle", init_image=init, strength=0.5, steps=2, seed=3)
    assert Image.open(path).size == (64, 64)
    with pytest.raises(ValueError, match="no inpainting weights"):
        handlers.image(holder, outputs, "a", init_image=init, mask=np.full((64, 64), 255, np.uint8), steps=2)
    with pytest.raises(ValueError, match="The denoising strength must be a finite number above 0 and at most 1"):
        handlers.image(holder, outputs, "a", init_image=init, strength=0, steps=2)
    with pytest.raises(ValueError, match="The negative prompt has 501 characters"):
        handlers.image(holder, outputs, "a", negative_prompt="x" * 501, steps=2)


def test_animation_handler(holder, outputs):
    path, seed = handlers.animate(holder, outputs, "a red circle | 0.5\na blue square | 0.25", motion="zoomin",
                                  schedules="zoom=0:(1.01)", fps=8, size=64, steps=2, seed=4)
    assert iio.imread(path, index=None).shape == (7, 64, 64, 3) and seed == 4
    with pytest.raises(ValueError, match="not a number of seconds"):
        handlers.animate(holder, outputs, "a red circle | soon", size=64, steps=2)
    with pytest.raises(ValueError, match="limit is 300"):
        handlers.animate(holder, outputs, "a red circle | 60", fps=24, size=64, steps=2)
    with pytest.raises(ValueError, match="must be a finite number above 0 and at most 3600, got inf"):
        handlers.animate(holder, outputs, "a red circle | inf", size=64, steps=2)
    with pytest.raises(ValueError, match="The frame rate must be a finite number above 0"):
        handlers.animate(holder, outputs, "a red circle", fps=-5, size=64, steps=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def running_app(holder):
    pytest.importorskip("gradio", reason="the web app is an optional extra: pip install -e '.[app]'")
    from kandinsky_video.app.ui import build_app

    outputs = Outputs()
    app = build_app(holder, outputs, limits=Limits(), size=64)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, allowed_paths=[str(outputs.root)])
    yield f"http://127.0.0.1:{port}/"
    app.close()
    outputs.cleanup()


def test_app_through_gradio_client(running_app):
    from gradio_client import Client

    client = Client(running_app, verbose=False)
    video, files, seed = client.predict("a red circle", "", 64, 64, "medium", 4, 2, 5.0, 0.25, "11", 0,
                                        api_name="/text_to_video")
    path = video["video"] if isinstance(video, dict) else video
    assert iio.imread(path, index=None).shape == (13, 64, 64, 3) and len(files) == 2 and seed == 11
    with pytest.raises(Exception, match="Enter a prompt"):
        client.predict("", "", 64, 64, "low", 4, 2, 5.0, 0.25, "", 0, api_name="/text_to_video")
    picture, seed = client.predict("a red circle", "", None, 0.3, 64, 64, 2, "5", api_name="/image")
    assert Image.open(picture).size == (64, 64) and seed == 5
    animation, seed = client.predict("a red circle | 0.25", "zoomin", "", "3D", 0.2, 2, 8, 64, 2, "6",
                                     api_name="/animate")
    path = animation["video"] if isinstance(animation, dict) else animation
    assert iio.imread(path, index=None).shape == (3, 64, 64, 3) and seed == 6


def test_the_queue_turns_requests_away_when_full(holder):
    pytest.importorskip("gradio", reason="the web app is an optional extra: pip install -e '.[app]'")
    from kandinsky_video.app.ui import build_app

    assert build_app(holder, Outputs(), limits=Limits(max_queue=3), size=64)._queue.max_size == 3


def test_app_binds_to_loopback_and_shares_nothing_by_default():
    import inspect

    from kandinsky_video.app.ui import launch

    defaults = inspect.signature(launch).parameters
    assert defaults["host"].default == "127.0.0.1" and defaults["share"].default is False


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_text_to_video_in_a_real_browser(running_app, tmp_path):
    if chromium_path() is None:
        pytest.skip("no Chromium here: install Debian's chromium package (.ci/run does)")
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page()
        page.goto(running_app)
        page.locator("#t2v-prompt textarea").fill("a red circle moving right")
        page.locator("#t2v-generate").click()
        video = page.locator("#t2v-video video")
        video.wait_for(timeout=120_000)
        page.wait_for_function("document.querySelector('#t2v-video video') && "
                               "document.querySelector('#t2v-video video').src.length > 0", timeout=120_000)
        assert video.get_attribute("src")
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        browser.close()
