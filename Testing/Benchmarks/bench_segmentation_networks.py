"""Benchmark: the paper's 2-D patch CNN beside the 3-D SegResNet (both FLAIR + T1c, trained on the
same simulated patients), Dice on the real cases and seconds per case, in one run. Needs
../shared/realdata (real data never ships) and MONAI; prints a table and writes JSON.

    python Testing/Benchmarks/bench_segmentation_networks.py [--threads 2] [--bundle EXTRA ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import tempfile
from pathlib import Path

import torch

from IDHPredictorLib.phantom.realism import real_cases_dir
from IDHPredictorLib.segmentation.evaluation import evaluate_cohort
from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS

BUNDLES = (DEFAULT_MODELS / "segmentation-flair-t1ce", DEFAULT_MODELS / "segmentation-segresnet-flair-t1ce")
REFERENCES = {"TCGA": "fused algorithmic labels", "BRATS2013": "expert labels"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bundle", nargs="*", default=[], help="further bundles to measure beside the shipped two")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "segmentation_networks.json"))
    args = parser.parse_args()
    realdata = real_cases_dir()
    if realdata is None:
        print("segmentation-network benchmark skipped: ../shared/realdata not found (real data never ships)")
        return
    torch.set_num_threads(args.threads)
    folders = [realdata, realdata / "brats2013-zscored"]
    results: dict[str, object] = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} torch threads",
                                  "date": dt.date.today().isoformat(), "bundles": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for bundle in [*BUNDLES, *map(Path, args.bundle)]:
            rows = []
            for index, folder in enumerate(folders):
                out = Path(scratch) / f"{bundle.name}-{index}"
                evaluate_cohort(folder, bundle, out)
                rows += json.loads((out / "segmentation_summary.json").read_text(encoding="utf-8"))["per_case"]
            results["bundles"][bundle.name] = rows
    print(f"Dice WT / TC / ET and seconds per case on the real cases ({results['machine']})")
    for name, rows in results["bundles"].items():
        print(f"  {name}")
        for row in rows:
            reference = next(v for k, v in REFERENCES.items() if row["case_id"].startswith(k))
            print(f"    {row['case_id']:14s} {row['whole_tumour_dice']:.3f} / {row['tumour_core_dice']:.3f} / "
                  f"{row['enhancing_dice']:.3f}  {row['segmentation_s']:6.1f} s  ({reference}; QC {row['quality'][:60]})")
        means = [sum(row[f"{r}_dice"] for row in rows) / len(rows) for r in ("whole_tumour", "tumour_core", "enhancing")]
        seconds = sum(row["segmentation_s"] for row in rows) / len(rows)
        print(f"    mean of {len(rows)}      {means[0]:.3f} / {means[1]:.3f} / {means[2]:.3f}  {seconds:6.1f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
