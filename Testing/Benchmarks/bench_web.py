"""Benchmark: the web app on a real case, driven in headless Chromium, beside the same steps on
the command line in one run: time to the first image, brush stroke to updated mask on the server,
load / segment / DLR / export through the page against `idh-predictor segment` and `predict`,
and the server's and the browser's memory. Also saves the README's screenshot of the real case
corrected in the browser. Needs ../shared/realdata (real data never ships), the web extra and
Debian's Chromium.

    python Testing/Benchmarks/bench_web.py [--case TCGA-FG-6692] [--out results/web.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "Python"))  # the browser driver the tests use

from web_driver import CHROMIUM, browser_page, click_and_wait, segment_volumes, stroke, view, wait_for_image, wait_volumes_change, web_server  # noqa: E402

from IDHPredictorLib.io.case import find_case_files  # noqa: E402
from IDHPredictorLib.phantom.realism import real_cases_dir  # noqa: E402

SCREENSHOT = HERE.parents[1] / "Resources" / "Screenshots"


def _linked_case(source: Path, target: Path, seg: Path | None) -> Path:
    """The case's images (symbolic links: real data is never copied) with ``seg`` as its label map, or none."""
    target.mkdir(parents=True)
    for image in source.iterdir():
        if not image.name.endswith("_seg.nii.gz"):
            (target / image.name).symlink_to(image)
    if seg is not None:
        (target / f"{find_case_files(source)[0]}_seg.nii.gz").symlink_to(seg)
    return target


def _cli_seconds(*arguments: str) -> float:
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "IDHPredictorLib.cli", *arguments], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"idh-predictor {arguments[0]} failed: {run.stderr.strip().splitlines()[-1]}")
    return time.perf_counter() - started


def _peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _chromium_rss_mb() -> float:
    """Resident memory of every Chromium process now (the browser, its renderer and GPU processes), MB."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if text.split("\n", 1)[0].split("\t")[-1].startswith(("chromium", "chrome")):
            total += next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


def run(case: Path, work: Path, screenshot: Path) -> dict[str, object]:
    data = work / "data"
    _linked_case(case, data / case.name, None)
    web: dict[str, float] = {}
    started = time.monotonic()
    with web_server(data, work / "reports", work / "server.log") as (url, process):
        web["server_start_s"] = time.monotonic() - started
        with browser_page(timeout_s=900) as page:  # a raw scan is skull-stripped first: minutes on a busy machine
            opened = time.monotonic()
            page.goto(url)
            page.select_option("#case", case.name)
            web["load_s"] = click_and_wait(page, "load", "Loaded ")
            web["first_image_s"] = wait_for_image(view(page, "Red")) - opened
            web["segment_s"] = click_and_wait(page, "segment", "segmentation finished")
            volumes = segment_volumes(page)
            # a correction as a reader might make it: the views are centred on the tumour; trim the
            # oedema along a line through its middle, then paint a little of it back
            page.select_option("#segment", label="Oedema")
            page.click("#btn-erase")
            page.locator("#brush-size").fill("5")
            page.wait_for_timeout(500)
            box = view(page, "Red").bounding_box()
            mouse_up = stroke(page, box, 0.5, 0.42, 0.58)
            volumes, seen = wait_volumes_change(page, volumes)
            web["erase_stroke_to_server_mask_s"] = seen - mouse_up
            page.click("#btn-paint")
            page.wait_for_timeout(500)
            mouse_up = stroke(page, box, 0.5, 0.47, 0.53)
            volumes, seen = wait_volumes_change(page, volumes)
            web["paint_stroke_to_server_mask_s"] = seen - mouse_up
            page.click("#btn-no-tool")
            web["dlr_s"] = click_and_wait(page, "dlr", "dlr finished")
            web["export_s"] = click_and_wait(page, "export", "Report written")
            page.wait_for_timeout(1000)  # the views the mouse is not over refresh at 2 frames per second
            SCREENSHOT.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
            memory = {"server_peak_mb": round(_peak_rss_mb(process.pid)), "browser_mb": round(_chromium_rss_mb())}
    case_id = find_case_files(case)[0]
    corrected = work / "reports" / case_id / f"{case_id}_seg.nii.gz"
    cli = {"segment_s": _cli_seconds("segment", str(data / case.name), "--out", str(work / "cli-seg.nii.gz")),
           "dlr_s": _cli_seconds("predict", str(_linked_case(case, work / "cli" / case.name, corrected)),
                                 "--out", str(work / "cli-result.json"))}
    return {"web": {k: round(v, 2) for k, v in web.items()}, "cli": {k: round(v, 2) for k, v in cli.items()},
            "memory": memory, "volumes_after_correction_ml": volumes,
            "ratio_web_to_cli": {step: round(web[step] / cli[step], 2) for step in cli}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="TCGA-FG-6692")
    parser.add_argument("--out", default=str(HERE / "results" / "web.json"))
    args = parser.parse_args()
    realdata = real_cases_dir()
    if realdata is None or not (realdata / args.case).is_dir() or not CHROMIUM.exists():
        print("web benchmark skipped: needs ../shared/realdata (real data never ships) and Debian's Chromium")
        return
    with tempfile.TemporaryDirectory() as tmp:
        measured = run(realdata / args.case, Path(tmp), SCREENSHOT / f"web-real-{'-'.join(Path(args.case).parts)}.png")
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "date": dt.date.today().isoformat(),
               "case": f"{args.case} (real TCGA case, BraTS layout; the CNN draws the mask, its _seg is not shown)", **measured}
    print(f"web app vs command line, {args.case} ({results['machine']})")
    for step, seconds in measured["web"].items():
        cli = measured["cli"].get(step)
        print(f"  {step:32s} web {seconds:7.2f} s" + (f"   CLI {cli:7.2f} s   ratio {seconds / cli:.2f}x" if cli else ""))
    print(f"  memory: server peak {measured['memory']['server_peak_mb']} MB, browser {measured['memory']['browser_mb']} MB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
