"""The web app (``idh-predictor web``) as a user drives it: a real server on a free local port,
Debian's Chromium through Playwright, real clicks and brush strokes, and the label maps the
server exports read back from disk. Screenshots of every step go to ``web-artifacts/`` (or
``$IDHPREDICTOR_ARTIFACTS``). The views' first image arrives over the websocket after the page
loads, so every check waits for it; brush strokes are paced because the server throttles events."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("trame_slicer", reason="needs the web extra (pip install -e '.[web]')")
playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path(os.environ.get("IDHPREDICTOR_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} not found: .ci/run installs Debian's chromium; the browser tests must run in CI")
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)

from IDHPredictorLib.io.cohort import case_folders  # noqa: E402

ARTIFACTS = Path(os.environ.get("IDHPREDICTOR_ARTIFACTS", Path(__file__).resolve().parents[2] / "web-artifacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory):
    """``idh-predictor web`` on a data folder with one phantom case (its _seg removed: the CNN draws
    the mask) and a file beside the data folder that must never be served."""
    root = tmp_path_factory.mktemp("web")
    data = root / "data"
    case = case_folders(small_cohort)[0]
    shutil.copytree(case, data / case.name, ignore=shutil.ignore_patterns("*_seg.nii.gz"))
    (root / "secret.txt").write_text("outside the data folder")
    port = _free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 (closed at teardown)
    process = subprocess.Popen([sys.executable, "-m", "IDHPredictorLib.cli", "web", str(data), "--port", str(port),
                                "--reports", str(root / "reports")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, (root / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the web app did not start"
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    yield {"url": url, "case": case.name, "reports": root / "reports", "log": root / "server.log", "data": data}
    process.terminate()
    process.wait(20)
    log.close()


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(180_000)
        yield page
        browser.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _view(page, tag: str):
    """The image element of the view named ``tag`` (Red: axial)."""
    return page.locator(f"div.view-{tag}").locator("xpath=..").locator("img.image-display-area").first


def _image_std(png: bytes) -> float:
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32).std())


def _wait_for_image(view, timeout_s: float = 60.0) -> float:
    """Wait until the view shows a rendered, non-blank image at its element's size; return when."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if view.count() and view.is_visible() and (view.get_attribute("src") or "").startswith("blob:"):
            natural = view.evaluate("e => [e.naturalWidth, e.naturalHeight, e.clientWidth, e.clientHeight]")
            if abs(natural[0] - natural[2]) <= 2 and abs(natural[1] - natural[3]) <= 2 and _image_std(view.screenshot()) > 5.0:
                return time.monotonic()
        time.sleep(0.1)
    raise AssertionError("the view never showed an image")


def _click_and_wait(page, button: str, done: str) -> None:
    """Click a step's button and wait until the page says it finished (or shows an error); the
    status is blanked first, so an earlier step's identical message is not taken for this one's."""
    page.evaluate("() => { window.trame.state.set('status', ''); window.trame.state.set('error', ''); }")
    page.wait_for_function("document.querySelector('#status').textContent.trim() === ''")
    page.click(f"#btn-{button}")
    page.wait_for_function(f"document.querySelector('#status').textContent.includes({json.dumps(done)})"
                           " || document.querySelector('#error').textContent.trim().length > 0")
    error = page.text_content("#error").strip()
    assert not error, error


def _volumes(page) -> dict[str, float]:
    texts = page.locator(".segment-volume").all_text_contents()
    return {text.split(":")[0]: float(text.split(":")[1].split()[0]) for text in texts}


def _stroke(page, box: dict, y_fraction: float, x_from: float, x_to: float) -> float:
    """A paced left-button drag across the view; returns the time of the mouse-up."""
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


def _wait_volumes_change(page, before: dict[str, float], timeout_s: float = 20.0) -> tuple[dict[str, float], float]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = _volumes(page)
        if now != before:
            return now, time.monotonic()
        time.sleep(0.02)
    raise AssertionError("the server's mask did not change after the stroke")


def _export(page, server) -> np.ndarray:
    _click_and_wait(page, "export", "Report written")
    report = server["reports"] / server["case"]
    return sitk.GetArrayFromImage(sitk.ReadImage(str(report / f"{server['case']}_seg.nii.gz")))


def _dlr_decision_value(page, server) -> float:
    """Run DLR from the page; its value as shown, and at full precision in the exported report."""
    _click_and_wait(page, "dlr", "dlr finished")
    shown = page.locator("#results tr", has_text="dlr.decision_value").locator("td").nth(1).text_content()
    _export(page, server)
    saved = json.loads((server["reports"] / server["case"] / "result.json").read_text())["dlr"]["decision_value"]
    assert float(shown) == pytest.approx(saved, rel=1e-3, abs=1e-4)
    return saved


def test_a_user_segments_corrects_predicts_and_exports(page, server) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    page.goto(server["url"])
    page.select_option("#case", server["case"])
    page.click("#btn-load")
    timings["first_image_s"] = _wait_for_image(_view(page, "Red")) - started
    _shot(page, "01-loaded")

    page.click("#btn-segment")  # started, then cancelled: the whole child process tree stops
    page.wait_for_function("document.querySelector('#btn-cancel').disabled === false")
    _click_and_wait(page, "cancel", "Cancelled.")
    assert not page.locator(".segment-volume").count()

    _click_and_wait(page, "segment", "segmentation finished")
    volumes = _volumes(page)
    assert len(volumes) == 3 and sum(volumes.values()) > 0, volumes
    _shot(page, "02-segmented")
    before_edit = _export(page, server)
    dlr_before = _dlr_decision_value(page, server)

    page.click("#btn-paint")
    page.locator("#brush-size").fill("12")
    page.check("#sphere-brush")  # a 12 mm sphere reaches the neighbouring slices DLR samples
    page.wait_for_timeout(300)
    box = _view(page, "Red").bounding_box()
    mouse_up = _stroke(page, box, 0.5, 0.2, 0.8)
    painted, seen = _wait_volumes_change(page, volumes)
    timings["paint_stroke_to_server_mask_s"] = seen - mouse_up
    _shot(page, "03-painted")
    page.click("#btn-erase")
    page.wait_for_timeout(300)
    mouse_up = _stroke(page, box, 0.5, 0.45, 0.55)
    _, seen = _wait_volumes_change(page, painted)
    timings["erase_stroke_to_server_mask_s"] = seen - mouse_up
    _shot(page, "04-erased")
    page.click("#btn-no-tool")

    after_edit = _export(page, server)
    changed = np.argwhere(after_edit != before_edit)  # (z, y, x)
    assert len(changed) > 20, len(changed)
    # a horizontal stroke through the middle of the axial view, which the app moved to the tumour's
    # centre: one slab of slices there, the middle rows, across the brain
    shape = np.array(after_edit.shape)
    tumour_slice = np.argwhere(before_edit > 0)[:, 0].mean()
    assert abs(changed[:, 0].mean() - tumour_slice) < 1.5, (changed[:, 0].mean(), tumour_slice)
    assert abs(changed[:, 1].mean() - shape[1] / 2) < shape[1] / 8, changed[:, 1].mean()
    assert np.ptp(changed[:, 2]) > shape[2] / 4
    assert _dlr_decision_value(page, server) != dlr_before

    _click_and_wait(page, "perfusion", "Perfusion:")
    assert page.get_attribute("#chart", "src").startswith("data:image/png;base64,")
    _shot(page, "05-perfusion")
    page.fill("#age", "38")
    page.click("#btn-fusion")
    page.wait_for_function("document.querySelector('#answer').textContent.includes('IDH-mutant probability')"
                           " || document.querySelector('#error').textContent.trim().length > 0")
    assert not page.text_content("#error").strip()
    assert "from DLR + perfusion LSTM + age" in page.text_content("#answer") and "calibrated" in page.text_content("#answer")
    _export(page, server)
    saved = json.loads((server["reports"] / server["case"] / "result.json").read_text())
    assert {"quality", "dlr", "perfusion"} <= set(saved) and (server["reports"] / server["case"] / "attention.png").exists()
    _shot(page, "06-exported")
    timings["whole_walk_through_s"] = time.monotonic() - started
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")


def test_a_forged_case_name_outside_the_data_folder_is_refused_in_the_page(page, server) -> None:
    """The page offers only the folder's cases; a client that sends another name is refused."""
    page.evaluate("() => window.trame.state.set('case_name', '../secret.txt')")
    page.click("#btn-load", force=True)
    page.wait_for_function("document.querySelector('#error').textContent.includes('outside the data folder')")
    _shot(page, "07-refused")


def test_an_uploaded_case_joins_the_list_and_a_bad_upload_is_explained(page, server, small_cohort: Path, tmp_path: Path) -> None:
    source = case_folders(small_cohort)[1]
    files = []
    for path in sorted(source.glob("*.nii.gz")):
        renamed = tmp_path / path.name.replace(source.name, "UPLOADED")
        shutil.copy(path, renamed)
        files.append(str(renamed))
    page.set_input_files("input[type=file]", files)
    page.wait_for_function("document.querySelector('#status').textContent.includes('Uploaded uploads/UPLOADED')")
    assert "uploads/UPLOADED" in page.locator("#case option").all_text_contents()
    assert sorted(p.name for p in (server["data"] / "uploads" / "UPLOADED").iterdir()) == sorted(Path(f).name for f in files)
    page.click("#btn-load")
    page.wait_for_function("document.querySelector('#status').textContent.includes('Loaded UPLOADED')")

    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    page.set_input_files("input[type=file]", [str(bad)])
    page.wait_for_function("document.querySelector('#error').textContent.includes('is not a NIfTI file')")
    _shot(page, "08-bad-upload")
