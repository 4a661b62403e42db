"""Benchmark: DSC analysis + curve extraction + attention-LSTM prediction per case (small
phantom patients, realistic 2x2x5 mm DSC), and attention-LSTM training time for 5 folds of a
300-patient-sized cohort on CPU (synthetic curves of the model's input shape, fixed epochs).

    python Testing/Benchmarks/bench_perfusion.py [--threads 2] [--cases 4] [--epochs 30] [--out results/perfusion.json]
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

from IDHPredictorLib.perfusion.analysis import analyse_dsc, read_perfusion_case
from IDHPredictorLib.perfusion.curves import GRID_FRAMES, patient_curves, sliding_windows
from IDHPredictorLib.perfusion.network import AttentionLSTM
from IDHPredictorLib.perfusion.training import LstmTraining, predict_patients, train_lstm
from IDHPredictorLib.phantom.cohort import PhantomOptions, case_id, generate_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "perfusion.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = AttentionLSTM().eval()
    per_case = []
    with tempfile.TemporaryDirectory() as tmp:
        cohort = generate_cohort(Path(tmp) / "c", PhantomOptions(cases=args.cases, seed=79, size="small"), workers=2)
        for index in range(args.cases):
            case = read_perfusion_case(cohort / case_id(index))  # reading is I/O, not timed
            start = time.perf_counter()
            curves = patient_curves(analyse_dsc(case.dsc, case.labels, case.reference))
            predict_patients(model, sliding_windows(curves.curves)[None])
            per_case.append(time.perf_counter() - start)
    rng = np.random.default_rng(0)
    patients = args.patients * 4 // 5  # one training fold of a 5-fold split
    windows = np.stack([sliding_windows(rng.standard_normal((5, GRID_FRAMES)).astype(np.float32)) for _ in range(patients)])
    labels = rng.integers(0, 2, patients)
    start = time.perf_counter()
    train_lstm(windows, labels, LstmTraining(epochs=args.epochs, patience=args.epochs, device="cpu"))
    fold = time.perf_counter() - start
    results = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} torch threads, torch {torch.__version__}",
               "analysis_and_prediction_s_per_case": per_case, "mean_s_per_case": float(np.mean(per_case)),
               "training_one_fold_s": fold, "epochs": args.epochs, "training_patients": patients,
               "training_five_folds_s_estimate": 5 * fold}
    print(f"machine: {results['machine']}")
    print(f"DSC analysis + curves + LSTM prediction: {np.mean(per_case):.2f} s/case "
          f"(min {min(per_case):.2f}, max {max(per_case):.2f}; {args.cases} small phantom cases, 2x2x5 mm DSC)")
    print(f"LSTM training, {patients} patients x 8 windows, {args.epochs} epochs: {fold:.1f} s per fold, "
          f"{5 * fold:.0f} s for 5 folds (CPU)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
