"""Benchmark: how the cohort-level steps scale with cohort size (10, 40, 160 patients) and the
per-case steps with image size (small 2.5 mm vs BraTS 1 mm), side by side in one run.

* DLR model fit (GMM + Fisher vector + t-test + F-score + SVM) on N patients' descriptors, and
  the selection + SVM LOOCV alone on N Fisher vectors (16,384 features).
* Attention-LSTM training on N patients (fixed epochs, no early stopping).
* Segmentation dense inference and deep descriptors per case, small vs full-size phantom.

Descriptors and curves for the cohort-size rows are synthetic with the real shapes (8,192 x 128
descriptors, 5 x 48 curves), so 160 patients need no hour of simulation; the full LOOCV of the
DLR model is N fits, estimated from the one-fit time (marked "est.").

    python Testing/Benchmarks/bench_scaling.py [--threads 2] [--sizes 10 40 160]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import LeaveOneOut

from IDHPredictorLib.dlr.descriptors import DescriptorOptions, deep_descriptors
from IDHPredictorLib.dlr.model import dlr_pipeline, selection_classifier
from IDHPredictorLib.io.case import read_case
from IDHPredictorLib.perfusion.curves import GRID_FRAMES, sliding_windows
from IDHPredictorLib.perfusion.training import LstmTraining, train_lstm
from IDHPredictorLib.phantom.cohort import PhantomOptions, case_id, generate_cohort
from IDHPredictorLib.segmentation.inference import segment_case
from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS, load_model


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def _synthetic_descriptors(patients: int, rng: np.random.Generator, count: int = 8192) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-patient descriptors (count x 128) with a weak class shift, both classes present."""
    labels = np.arange(patients) % 3 != 0
    return [rng.standard_normal((count, 128)).astype(np.float32) + 0.05 * label for label in labels], labels.astype(int)


def _svm_loocv(vectors: np.ndarray, labels: np.ndarray) -> None:
    """Selection + SVM refitted for every left-out patient (what LOOCV costs after encoding)."""
    for train, test in LeaveOneOut().split(vectors):
        selection_classifier().fit(vectors[train], labels[train]).decision_function(vectors[test])


def cohort_rows(sizes: list[int], epochs: int, rng: np.random.Generator) -> list[dict]:
    warm_up = np.stack([sliding_windows(rng.standard_normal((5, GRID_FRAMES)).astype(np.float32)) for _ in range(4)])
    train_lstm(warm_up, np.array([0, 1, 0, 1]), LstmTraining(epochs=1, patience=1, device="cpu"))  # torch start-up, untimed
    rows = []
    for patients in sizes:
        descriptors, labels = _synthetic_descriptors(patients, rng)
        fit = _timed(dlr_pipeline().fit, descriptors[1:], labels[1:])
        encoder = dlr_pipeline().named_steps["encoder"].fit(descriptors, labels)
        vectors = encoder.transform(descriptors)

        svm = _timed(_svm_loocv, vectors, labels)
        windows = np.stack([sliding_windows(rng.standard_normal((5, GRID_FRAMES)).astype(np.float32)) for _ in range(patients)])
        lstm = _timed(train_lstm, windows, labels, LstmTraining(epochs=epochs, patience=epochs, device="cpu"))
        rows.append({"patients": patients, "dlr_fit_s": fit, "dlr_loocv_s_est": fit * patients,
                     "svm_loocv_s": svm, "lstm_training_s": lstm, "lstm_epochs": epochs})
    return rows


def image_rows(threads: int) -> list[dict]:
    model = load_model(DEFAULT_MODELS / "segmentation-flair-t1ce")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in ("small", "full"):
            cohort = generate_cohort(Path(tmp) / size, PhantomOptions(cases=1, seed=91, size=size), workers=1)
            case = read_case(cohort / case_id(0), model.modalities, dsc=False)
            segmentation = _timed(segment_case, model.network, model.modalities, case)
            descriptors = _timed(deep_descriptors, model.network, model.modalities, case, case.labels, ("conv6",),
                                 DescriptorOptions())
            rows.append({"size": size, "shape_xyz": list(case.reference.GetSize()), "segmentation_s": segmentation,
                         "descriptors_s": descriptors})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 40, 160])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaling.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    cohort = cohort_rows(args.sizes, args.epochs, rng)
    images = image_rows(args.threads)
    machine = f"{platform.processor() or platform.machine()}, {args.threads} torch threads, torch {torch.__version__}"
    print(f"machine: {machine}")
    print(f"| patients | DLR fit s | DLR LOOCV s (est.) | SVM LOOCV on Fisher vectors s | LSTM training s ({args.epochs} epochs) |")
    print("|---|---|---|---|---|")
    for r in cohort:
        print(f"| {r['patients']} | {r['dlr_fit_s']:.1f} | {r['dlr_loocv_s_est']:.0f} | {r['svm_loocv_s']:.1f} | {r['lstm_training_s']:.1f} |")
    print("| image | size (x, y, z) | segmentation s | deep descriptors s |")
    print("|---|---|---|---|")
    for r in images:
        print(f"| {r['size']} | {tuple(r['shape_xyz'])} | {r['segmentation_s']:.1f} | {r['descriptors_s']:.1f} |")
    small, full = images
    print(f"full / small: segmentation {full['segmentation_s'] / small['segmentation_s']:.1f}x, "
          f"descriptors {full['descriptors_s'] / small['descriptors_s']:.1f}x, "
          f"voxels {np.prod(full['shape_xyz']) / np.prod(small['shape_xyz']):.1f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "cohort_size": cohort, "image_size": images}, indent=2) + "\n",
                              encoding="utf-8")


if __name__ == "__main__":
    main()
