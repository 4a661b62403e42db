"""Benchmark: a raw scan (skull, 5.5 mm slices, one grid per series) to a tumour mask, step by
step, beside the same patient's BraTS-ready case, in one run with the default FLAIR + T1c
bundle. Needs ../shared/realdata (real data never ships); prints a table and writes JSON.

    python Testing/Benchmarks/bench_raw_inputs.py [--threads 2] [--out results/raw_inputs.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from IDHPredictorLib.phantom.realism import real_cases_dir
from IDHPredictorLib.preprocessing.prepare import prepare_case_folder
from IDHPredictorLib.segmentation.inference import segment_prepared
from IDHPredictorLib.segmentation.model_bundle import default_bundle_for, load_model

MODALITIES = ("flair", "t1ce")


def timed_run(model, folder: Path) -> dict[str, object]:
    """Prepare and segment one case; seconds per step, total, input kind, whole-tumour volume."""
    started = time.perf_counter()
    prepared = prepare_case_folder(folder, MODALITIES, labels=False)
    prepared_s = time.perf_counter() - started
    result = segment_prepared(model, prepared)
    total = time.perf_counter() - started
    steps: dict[str, float] = {}
    for step in prepared.steps:
        steps[str(step["step"])] = steps.get(str(step["step"]), 0.0) + float(step["seconds"])
    steps["other preparation (reading, checks)"] = prepared_s - sum(steps.values())
    steps["segmentation"] = total - prepared_s
    labels = result.labels
    whole = float((sitk.GetArrayViewFromImage(labels) > 0).sum()) * float(np.prod(labels.GetSpacing())) / 1000
    return {"input": prepared.input_kind.value, "steps_s": {k: round(v, 2) for k, v in steps.items()},
            "total_s": round(total, 2), "whole_tumour_ml": round(whole, 1), "quality": result.quality.verdict}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "raw_inputs.json"))
    args = parser.parse_args()
    realdata = real_cases_dir()
    raw = None if realdata is None else realdata / "raw" / "TCGA-FG-6692" / "native"
    if raw is None or not raw.is_dir():
        print("raw-input benchmark skipped: ../shared/realdata/raw/TCGA-FG-6692 not found (real data never ships)")
        return
    torch.set_num_threads(args.threads)
    bundle = default_bundle_for({"flair", "t1ce"})
    model = load_model(bundle)
    timed_run(model, realdata / "TCGA-FG-6692")  # warm-up: imports, kernels, the skull stripper's first load below
    raw_name = "raw (skull, 5.5 mm, FLAIR and T1c on their own grids)"
    runs = {raw_name: timed_run(model, raw),
            "BraTS-ready (same patient)": timed_run(model, realdata / "TCGA-FG-6692")}
    results = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} torch threads",
               "date": dt.date.today().isoformat(), "bundle": bundle.name, "runs": runs,
               "ratio_raw_to_ready": round(runs[raw_name]["total_s"]
                                           / runs["BraTS-ready (same patient)"]["total_s"], 2)}
    print(f"raw scan to tumour mask, TCGA-FG-6692, default FLAIR + T1c bundle {bundle.name} ({results['machine']})")
    for name, run in runs.items():
        print(f"  {name}: {run['total_s']:.1f} s ({run['input']}; whole tumour {run['whole_tumour_ml']} mL; QC {run['quality']})")
        for step, seconds in run["steps_s"].items():
            print(f"      {step:38s} {seconds:6.1f} s")
    print(f"  ratio raw / BraTS-ready: {results['ratio_raw_to_ready']:.2f}x "
          "(the raw run includes the skull stripper's first load in this process)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
