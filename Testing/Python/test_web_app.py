"""The web app (``idh-predictor web``) as a user drives it: a real server on a free local port,
Debian's Chromium through Playwright, real clicks and brush strokes, and the label maps the
server exports read back from disk. Screenshots of every step go to ``web-artifacts/`` (or
``$IDHPREDICTOR_ARTIFACTS``). The views' first image arrives over the websocket after the page
loads, so every check waits for it; brush strokes are paced because the server throttles events."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("trame_slicer", reason="needs the web extra (pip install -e '.[web]')")
pytest.importorskip("playwright.sync_api")
from web_driver import CHROMIUM, browser_page, click_and_wait, segment_volumes, stroke, view, wait_for_image, wait_volumes_change, web_server  # noqa: E402

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} not found: .ci/run installs Debian's chromium; the browser tests must run in CI")
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)

from IDHPredictorLib.io.cohort import case_folders  # noqa: E402

ARTIFACTS = Path(os.environ.get("IDHPREDICTOR_ARTIFACTS", Path(__file__).resolve().parents[2] / "web-artifacts"))


@pytest.fixture(scope="module")
def server(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory):
    """``idh-predictor web`` on a data folder with one phantom case (its _seg removed: the CNN draws
    the mask) and a file beside the data folder that must never be served."""
    root = tmp_path_factory.mktemp("web")
    data = root / "data"
    case = case_folders(small_cohort)[0]
    shutil.copytree(case, data / case.name, ignore=shutil.ignore_patterns("*_seg.nii.gz"))
    (root / "secret.txt").write_text("outside the data folder")
    with web_server(data, root / "reports", root / "server.log") as (url, _):
        yield {"url": url, "case": case.name, "reports": root / "reports", "data": data}


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        yield page


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _export(page, server) -> np.ndarray:
    click_and_wait(page, "export", "Report written")
    report = server["reports"] / server["case"]
    return sitk.GetArrayFromImage(sitk.ReadImage(str(report / f"{server['case']}_seg.nii.gz")))


def _dlr_decision_value(page, server) -> float:
    """Run DLR from the page; its value as shown, and at full precision in the exported report."""
    click_and_wait(page, "dlr", "dlr finished")
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
    timings["first_image_s"] = wait_for_image(view(page, "Red")) - started
    _shot(page, "01-loaded")

    page.click("#btn-segment")  # started, then cancelled: the whole child process tree stops
    page.wait_for_function("document.querySelector('#btn-cancel').disabled === false")
    click_and_wait(page, "cancel", "Cancelled.")
    assert not page.locator(".segment-volume").count()

    click_and_wait(page, "segment", "segmentation finished")
    volumes = segment_volumes(page)
    assert len(volumes) == 3 and sum(volumes.values()) > 0, volumes
    _shot(page, "02-segmented")
    before_edit = _export(page, server)
    dlr_before = _dlr_decision_value(page, server)

    page.click("#btn-paint")
    page.locator("#brush-size").fill("12")
    page.check("#sphere-brush")  # a 12 mm sphere reaches the neighbouring slices DLR samples
    page.wait_for_timeout(300)
    box = view(page, "Red").bounding_box()
    mouse_up = stroke(page, box, 0.5, 0.2, 0.8)
    painted, seen = wait_volumes_change(page, volumes)
    timings["paint_stroke_to_server_mask_s"] = seen - mouse_up
    _shot(page, "03-painted")
    page.click("#btn-erase")
    page.wait_for_timeout(300)
    mouse_up = stroke(page, box, 0.5, 0.45, 0.55)
    _, seen = wait_volumes_change(page, painted)
    timings["erase_stroke_to_server_mask_s"] = seen - mouse_up
    _shot(page, "04-erased")
    page.click("#btn-no-tool")

    after_edit = _export(page, server)
    changed = np.argwhere(after_edit != before_edit)  # (z, y, x)
    assert len(changed) > 20, len(changed)
    # a horizontal stroke through the middle of the axial view, which the app centred on the tumour:
    # a slab of slices and rows around the tumour's centre, a long run of columns
    shape = np.array(after_edit.shape)
    centre = np.argwhere(before_edit > 0).mean(axis=0)
    assert abs(changed[:, 0].mean() - centre[0]) < 1.5, (changed[:, 0].mean(), centre)
    assert abs(changed[:, 1].mean() - centre[1]) < shape[1] / 10, (changed[:, 1].mean(), centre)
    assert np.ptp(changed[:, 2]) > shape[2] / 4
    assert _dlr_decision_value(page, server) != dlr_before

    click_and_wait(page, "perfusion", "Perfusion:")
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
