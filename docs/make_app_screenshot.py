"""Recipe for docs/app.png: the web app with the demo model, after one text-to-video generation, in headless Chromium.

    python docs/make_app_screenshot.py [--prompt "a red circle moving right on a black background"] [--out docs/app.png]

Needs the app extra (Gradio), playwright and Debian's chromium package (what the browser test uses).
"""

import argparse
import shutil
import socket

from playwright.sync_api import sync_playwright

from kandinsky_video.app.handlers import Limits, ModelHolder, Outputs
from kandinsky_video.app.ui import build_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt", default="a red circle moving right on a black background")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--out", default="docs/app.png")
    args = parser.parse_args()
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        raise SystemExit("needs Chromium: apt-get install chromium")

    outputs = Outputs()
    app = build_app(ModelHolder("demo"), outputs, Limits())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, allowed_paths=[str(outputs.root)])
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=browser_path, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#t2v-prompt textarea").fill(args.prompt)
            page.locator("#t2v-seed textarea").fill(args.seed)
            page.locator("#t2v-generate").click()
            page.wait_for_function("document.querySelector('#t2v-video video') && "
                                   "document.querySelector('#t2v-video video').src.length > 0", timeout=300_000)
            page.wait_for_timeout(1500)  # let the player show its first frame
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        app.close()
        outputs.cleanup()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
