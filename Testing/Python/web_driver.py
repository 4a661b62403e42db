"""Driving ``idh-predictor web`` as a user would, for the browser tests and the web benchmark:
start the server on a free local port, open it in Debian's Chromium through Playwright (never a
downloaded browser), wait for the views' first image (it arrives over the websocket after the
page loads), click the steps, paint paced strokes (the server throttles events) and read the
page's answers."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CHROMIUM = Path(os.environ.get("IDHPREDICTOR_CHROMIUM", "/usr/bin/chromium"))
# Headless as root, in a closed network: no sandbox, no GPU, no background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def web_server(data: Path, reports: Path, log_path: Path, timeout_s: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """``idh-predictor web DATA`` running until the block ends; yields its URL and process."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "IDHPredictorLib.cli", "web", str(data), "--port", str(port),
                                    "--reports", str(reports)], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the web app did not start:\n{log_path.read_text()[-3000:]}")
                try:
                    urllib.request.urlopen(url, timeout=1)
                    break
                except OSError:
                    time.sleep(0.3)
            yield url, process
        finally:
            process.terminate()
            process.wait(20)


@contextlib.contextmanager
def browser_page(width: int = 1600, height: int = 1000, timeout_s: float = 180.0) -> Iterator[object]:
    """A Playwright page in headless Chromium; every wait fails after ``timeout_s``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(timeout_s * 1000)
        try:
            yield page
        finally:
            browser.close()


def view(page, tag: str):
    """The image element of the view named ``tag`` (Red: axial, Green: coronal, Yellow: sagittal)."""
    return page.locator(f"div.view-{tag}").locator("xpath=..").locator("img.image-display-area").first


def _image_std(png: bytes) -> float:
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32).std())


def wait_for_image(image, timeout_s: float = 60.0) -> float:
    """Wait until a view shows a rendered, non-blank image at its element's size (the first frame
    can come at a default size before the page reports the view's); return when."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if image.count() and image.is_visible() and (image.get_attribute("src") or "").startswith("blob:"):
            natural = image.evaluate("e => [e.naturalWidth, e.naturalHeight, e.clientWidth, e.clientHeight]")
            if abs(natural[0] - natural[2]) <= 2 and abs(natural[1] - natural[3]) <= 2 and _image_std(image.screenshot()) > 5.0:
                return time.monotonic()
        time.sleep(0.1)
    raise AssertionError("the view never showed an image")


def click_and_wait(page, button: str, done: str) -> float:
    """Click a step's button and wait until the page says it finished; an error shown instead
    fails. The status is blanked first, so an earlier step's identical message is not taken for
    this one's. Returns the seconds from the click to the answer."""
    page.evaluate("() => { window.trame.state.set('status', ''); window.trame.state.set('error', ''); }")
    page.wait_for_function("document.querySelector('#status').textContent.trim() === ''")
    started = time.monotonic()
    page.click(f"#btn-{button}")
    page.wait_for_function(f"document.querySelector('#status').textContent.includes({json.dumps(done)})"
                           " || document.querySelector('#error').textContent.trim().length > 0")
    elapsed = time.monotonic() - started
    error = page.text_content("#error").strip()
    assert not error, error
    return elapsed


def segment_volumes(page) -> dict[str, float]:
    """The segment volumes (mL) the page shows, as the server last measured them."""
    texts = page.locator(".segment-volume").all_text_contents()
    return {text.split(":")[0]: float(text.split(":")[1].split()[0]) for text in texts}


def stroke(page, box: dict, y_fraction: float, x_from: float, x_to: float) -> float:
    """A paced left-button drag across a view's box; returns the time of the mouse-up."""
    y = box["y"] + box["height"] * y_fraction
    xs = np.linspace(box["x"] + box["width"] * x_from, box["x"] + box["width"] * x_to, 25)
    page.mouse.move(float(xs[0]), y)
    time.sleep(0.1)
    page.mouse.down()
    for x in xs:
        page.mouse.move(float(x), y)
        time.sleep(0.03)
    page.mouse.up()
    return time.monotonic()


def wait_volumes_change(page, before: dict[str, float], timeout_s: float = 20.0) -> tuple[dict[str, float], float]:
    """Wait until the server's segment volumes differ from ``before``; return them and when."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = segment_volumes(page)
        if now != before:
            return now, time.monotonic()
        time.sleep(0.02)
    raise AssertionError("the server's mask did not change after the stroke")
