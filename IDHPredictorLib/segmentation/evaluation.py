"""Overlap metrics for BraTS regions: Dice, positive predictive value and sensitivity."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

REGIONS = {"whole_tumour": (1, 2, 4), "tumour_core": (1, 4), "enhancing": (4,)}


def region_metrics(prediction: np.ndarray, reference: np.ndarray) -> dict[str, dict[str, float]]:
    """{region: {dice, ppv, sensitivity}} for whole tumour, tumour core and enhancing tumour.

    A region absent from both maps scores 1 (correctly empty); absent from one only, 0.
    """
    out = {}
    for region, labels in REGIONS.items():
        p, r = np.isin(prediction, labels), np.isin(reference, labels)
        overlap, p_sum, r_sum = float((p & r).sum()), float(p.sum()), float(r.sum())
        out[region] = {
            "dice": 1.0 if p_sum + r_sum == 0 else 2 * overlap / (p_sum + r_sum),
            "ppv": (1.0 if r_sum == 0 else 0.0) if p_sum == 0 else overlap / p_sum,
            "sensitivity": (1.0 if p_sum == 0 else 0.0) if r_sum == 0 else overlap / r_sum,
        }
    return out


def evaluate_files(prediction: str | Path, reference: str | Path) -> dict[str, dict[str, float]]:
    """Metrics of two label map files; they must share a grid."""
    from ..io.case import read_label_map
    from ..io.images import read_image, same_grid

    predicted = read_image(prediction)
    truth = read_label_map(Path(reference))
    if not same_grid(predicted, truth):
        raise InputError(prediction, "is not on the reference label map's grid", "Segment the same case's images")
    predicted_labels = sitk.GetArrayFromImage(predicted)
    predicted_labels = np.where(predicted_labels == 3, 4, predicted_labels)  # BraTS 2023 enhancing
    return region_metrics(predicted_labels, sitk.GetArrayFromImage(truth))


@dataclass
class LabelledSegmentation:
    """A labelled case segmented by a bundle: both label maps on the prepared grid, the quality
    line (``pass``, the problems, or the refusal), seconds of segmentation and checks."""

    case_id: str
    input_kind: str
    predicted: np.ndarray
    reference: np.ndarray
    spacing: tuple[float, ...]
    quality: str
    seconds: float


def segment_labelled_case(bundle: str, folder: Path, rule_free: bool = False,
                          window: int | None = None) -> LabelledSegmentation | None:
    """Segment one labelled case folder with ``bundle``; a quality-control refusal is the model's
    answer, an empty mask. None for a folder without images or labels. ``rule_free``: without the
    bundle's smallest-enhancing-volume rule (``enhancing_rule`` chooses it this way); ``window``:
    a 3-D bundle run with this sliding window (``sliding_window`` chooses it this way)."""
    from ..io.images import holds_images
    from ..preprocessing.prepare import prepare_case_folder
    from .inference import choose_device, loaded_model, segment_prepared
    from .model_bundle import load_model

    if not holds_images(folder):
        return None  # not a case folder (e.g. a nested collection of cases)
    if window is None:
        model = loaded_model(bundle)
    else:  # a fresh copy: the cached model stays as its bundle says
        model = load_model(bundle, choose_device())
        model.network.architecture = replace(model.network.architecture, window=window)
    if rule_free:
        model = replace(model, record={k: v for k, v in model.record.items() if k != "postprocessing"})
    prepared = prepare_case_folder(folder, model.modalities)
    if prepared.case.labels is None:
        return None
    reference = sitk.GetArrayFromImage(prepared.case.labels)
    started = time.perf_counter()
    try:
        result = segment_prepared(model, prepared)
        predicted, quality = sitk.GetArrayFromImage(result.prepared_labels), "; ".join(
            c.line() for c in result.quality.problems()) or "pass"
    except InputError as refusal:  # a quality-control refusal is the model's answer: no mask, scored as empty
        predicted, quality = np.zeros_like(reference), f"refused: {refusal}"
    return LabelledSegmentation(prepared.case.case_id, prepared.input_kind.value, predicted, reference,
                                prepared.case.labels.GetSpacing(), quality, time.perf_counter() - started)


def evaluate_case(bundle: str, folder: Path) -> dict[str, object] | None:
    """One labelled case's row of ``evaluate_cohort`` (None for a folder without images or labels)."""
    case = segment_labelled_case(bundle, folder)
    if case is None:
        return None
    metrics = region_metrics(case.predicted, case.reference)
    return {"case_id": case.case_id, "input": case.input_kind,
            **{f"{r}_{k}": round(v, 4) for r, m in metrics.items() for k, v in m.items()},
            "segmentation_s": round(case.seconds, 1), "quality": case.quality}


def evaluate_cohort(cohort_dir: str | Path, bundle: str | Path, out_dir: str | Path,
                    record_as: str | None = None, progress: Callable[[int, int], None] | None = None,
                    workers: int = 1) -> dict:
    """Segment every labelled case of a folder of cases with ``bundle``; write per-case CSV and
    summary JSON to ``out_dir``; optionally record the summary in the bundle's model.json.

    ``cohort_dir`` may be a phantom cohort or any folder of BraTS-layout case folders (such as
    ../shared/realdata); clinical.csv is not needed. A case the quality control refuses counts as
    an empty mask, and its row says why. Each row gives the seconds segmentation and its checks took.
    Cases run on the cluster when one is in use, else in ``workers`` processes; a case that fails
    (unreadable files) is named once the others are done.
    """
    from ..bundle import update_bundle_metrics
    from ..compute import all_succeeded, map_cases
    from ..io.atomic import atomic_path
    from ..io.cohort import case_folders

    folders = case_folders(cohort_dir)
    bundle_path = str(Path(bundle).resolve())
    results = all_succeeded(map_cases(evaluate_case, [(bundle_path, f) for f in folders], [f.name for f in folders],
                                      workers, progress), f"evaluating {Path(bundle).name}")
    rows = [row for row in results if row is not None]
    if not rows:
        raise InputError(cohort_dir, "has no case with a label map", "Evaluation needs <id>_seg label maps")
    summary = {"cohort": str(cohort_dir), "cases": len(rows), "model": str(bundle),
               "mean": {key: round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0]
                     if key not in ("case_id", "input", "quality")}}
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "segmentation_metrics.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(out_dir / "segmentation_summary.json") as tmp:
        tmp.write_text(json.dumps({**summary, "per_case": rows}, indent=2) + "\n", encoding="utf-8")
    if record_as:
        update_bundle_metrics(bundle, record_as, {"dice": {r: summary["mean"][f"{r}_dice"] for r in REGIONS},
                                                 "cases": len(rows), "per_case_dice": {
                                                     row["case_id"]: {r: row[f"{r}_dice"] for r in REGIONS} for row in rows}})
    return summary
