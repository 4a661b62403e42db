"""Benchmark: the GPU path, on whichever device this machine has (CUDA when available, else CPU),
with the device named, so that a run on a GPU machine records its numbers beside the CPU ones.

* Full-size segmentation per case (shipped FLAIR+T1c bundle), float32 and, on CUDA, the default
  bfloat16 autocast; goal on a GPU: < 0.5 s per case.
* Deep descriptors per case (conv6, float32).
* Segmentation training: seconds per 10,000 patch labels on a small phantom cohort, and the
  shipped bundle's training time at that rate (est.: its recorded epochs x patches per epoch).
* Attention-LSTM training per fold (240 patients, 10 epochs).

    python Testing/Benchmarks/bench_devices.py     # on a GPU machine: run_benchmarks.py bench_devices
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from IDHPredictorLib.dlr.descriptors import DescriptorOptions, deep_descriptors
from IDHPredictorLib.io.case import read_case
from IDHPredictorLib.perfusion.curves import GRID_FRAMES, sliding_windows
from IDHPredictorLib.perfusion.training import LstmTraining, train_lstm
from IDHPredictorLib.phantom.cohort import PhantomOptions, case_id, generate_cohort
from IDHPredictorLib.segmentation import inference
from IDHPredictorLib.segmentation.inference import choose_device, segment_case
from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS, load_model
from IDHPredictorLib.segmentation.training import TrainingOptions, train

HERE = Path(__file__).resolve().parent
BUNDLE = DEFAULT_MODELS / "segmentation-flair-t1ce"
TRAINING_PATCHES = 8 * 2592  # 8 steps of 32 tiles x 81 patch labels


def _synchronised_seconds(device: torch.device, function, *args, **kwargs) -> float:
    """Wall seconds of ``function``; the second of two calls (the first warms kernels and caches)."""
    function(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    function(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def segmentation_rows(device: torch.device, scratch: Path) -> dict:
    model = load_model(BUNDLE, device)
    cohort = generate_cohort(scratch / "full", PhantomOptions(cases=1, seed=91, size="full"), workers=1)
    case = read_case(cohort / case_id(0), model.modalities, dsc=False)
    row = {"segmentation_float32_s": _with_mixed(False, device, segment_case, model.network, model.modalities, case)}
    if device.type == "cuda":
        row["segmentation_bfloat16_s"] = _with_mixed(None, device, segment_case, model.network, model.modalities, case)
    row["descriptors_s"] = _synchronised_seconds(device, deep_descriptors, model.network, model.modalities, case,
                                                 case.labels, ("conv6",), DescriptorOptions())
    return row


def _with_mixed(mixed: bool | None, device: torch.device, function, *args) -> float:
    """Time ``function`` with dense inference's autocast forced to ``mixed`` (None: the default)."""
    original = inference.dense_scores

    def forced(*a, **k):
        return original(*a, **{**k, "mixed": mixed})

    inference.dense_scores = forced
    try:
        return _synchronised_seconds(device, function, *args)
    finally:
        inference.dense_scores = original


def training_row(device: torch.device, scratch: Path) -> dict:
    cohort = generate_cohort(scratch / "train", PhantomOptions(cases=4, seed=92, size="small"), workers=1)
    options = TrainingOptions(epochs=1, patches_per_epoch=TRAINING_PATCHES, validation_cases=1, device=device.type)
    started = time.perf_counter()
    train(cohort, scratch / "bundle", options)
    seconds = time.perf_counter() - started
    shipped = json.loads((BUNDLE / "model.json").read_text())
    shipped_options = shipped.get("training", {}).get("options", {})
    patches = shipped_options.get("epochs", 6) * shipped_options.get("patches_per_epoch", 259200)
    return {"training_s_per_10k_patches": seconds / TRAINING_PATCHES * 10_000,
            "shipped_bundle_training_min_est": seconds / TRAINING_PATCHES * patches / 60, "shipped_patches": patches}


def lstm_row(device: torch.device, patients: int = 240, epochs: int = 10) -> dict:
    rng = np.random.default_rng(0)
    windows = np.stack([sliding_windows(rng.standard_normal((5, GRID_FRAMES)).astype(np.float32)) for _ in range(patients)])
    labels = np.arange(patients) % 3 == 0
    options = LstmTraining(epochs=epochs, patience=epochs, device=device.type)
    return {"lstm_fold_s": _synchronised_seconds(device, train_lstm, windows, labels.astype(int), options),
            "lstm_patients": patients, "lstm_epochs": epochs}


def main() -> None:
    device = choose_device()
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)"
    with tempfile.TemporaryDirectory(prefix="bench-devices-") as scratch:
        row = {"device": name, "torch": torch.__version__, **segmentation_rows(device, Path(scratch)),
               **training_row(device, Path(scratch)), **lstm_row(device)}
    print(f"device: {name}, torch {torch.__version__}")
    print(f"  segmentation, full-size case (240 x 240 x 155), float32   {row['segmentation_float32_s']:7.2f} s  (goal on a GPU: < 0.5 s)")
    if "segmentation_bfloat16_s" in row:
        print(f"  segmentation, bfloat16 autocast (the CUDA default)       {row['segmentation_bfloat16_s']:7.2f} s  "
              f"(float32 / bfloat16 = {row['segmentation_float32_s'] / row['segmentation_bfloat16_s']:.2f}x)")
    print(f"  deep descriptors per case (conv6)                        {row['descriptors_s']:7.2f} s")
    print(f"  segmentation training                                    {row['training_s_per_10k_patches']:7.2f} s per 10,000 patch labels "
          f"-> shipped bundle ({row['shipped_patches']:,} patch labels) ~{row['shipped_bundle_training_min_est']:.0f} min (est.)")
    print(f"  attention-LSTM training, one fold ({row['lstm_patients']} patients, {row['lstm_epochs']} epochs) "
          f"{row['lstm_fold_s']:7.2f} s")
    out = HERE / "results" / f"devices-{device.type}.json"
    out.write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
