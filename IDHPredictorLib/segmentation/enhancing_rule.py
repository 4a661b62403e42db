"""Choose a bundle's smallest enhancing volume (``postprocess``: smaller enhancing regions become
core) on a labelled SIMULATED cohort, and record it in the bundle's model.json.

The volume is the candidate with the best mean enhancing Dice on that cohort (the smallest one
on a tie, so that the rule stays off unless it helps). A case's enhancing Dice under a candidate
follows from one rule-free segmentation: below the volume, the prediction becomes "no
enhancing", which scores 1 when the reference has none and 0 otherwise. Real cases are never
used to choose it: they are where it is measured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError

CANDIDATES_ML = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


def enhancing_row(bundle: str, folder: Path) -> dict[str, object] | None:
    """One labelled case's rule-free enhancing prediction: its volume (mL), its Dice, and whether
    the reference has enhancing tumour (None for a folder without images or labels)."""
    from .evaluation import region_metrics, segment_labelled_case

    case = segment_labelled_case(bundle, folder, rule_free=True)
    if case is None:
        return None
    voxel_ml = float(np.prod(case.spacing)) / 1000.0
    return {"case_id": case.case_id, "predicted_ml": float((case.predicted == 4).sum()) * voxel_ml,
            "reference_has_enhancing": bool((case.reference == 4).any()),
            "dice": region_metrics(case.predicted, case.reference)["enhancing"]["dice"]}


def mean_dice_by_candidate(rows: list[dict[str, object]],
                           candidates: tuple[float, ...] = CANDIDATES_ML) -> dict[float, float]:
    """Mean enhancing Dice of ``rows`` (``enhancing_row``) under each smallest volume."""
    def dice(row: dict[str, object], millilitres: float) -> float:
        if row["predicted_ml"] < millilitres:
            return 0.0 if row["reference_has_enhancing"] else 1.0
        return float(row["dice"])

    return {m: float(np.mean([dice(row, m) for row in rows])) for m in candidates}


def choose_min_enhancing(cohort_dir: str | Path, bundle: str | Path, record: bool = False, workers: int = 1,
                         progress: Callable[[int, int], None] | None = None) -> dict[str, object]:
    """Segment every labelled case of a simulated cohort without the rule, score each candidate
    volume, and (``record``) write the best into the bundle as ``postprocessing.min_enhancing_ml``."""
    from ..bundle import update_bundle_record
    from ..compute import all_succeeded, map_cases
    from ..io.cohort import case_folders, cohort_record

    chosen_on = cohort_record(cohort_dir)
    if "phantom" not in chosen_on:
        raise InputError(cohort_dir, "is not a simulated (phantom) cohort",
                         "Choose the volume on simulated cases (idh-predictor phantom), so that real cases stay a test")
    folders = case_folders(cohort_dir)
    bundle_path = str(Path(bundle).resolve())
    rows = [row for row in all_succeeded(map_cases(enhancing_row, [(bundle_path, f) for f in folders],
                                                   [f.name for f in folders], workers, progress),
                                         f"segmenting with {Path(bundle).name}") if row is not None]
    if not rows:
        raise InputError(cohort_dir, "has no case with a label map", "Choose the volume on a labelled simulated cohort")
    scores = mean_dice_by_candidate(rows)
    best = max(scores.values())
    chosen = min(m for m, score in scores.items() if score >= best - 1e-9)
    result = {"min_enhancing_ml": chosen, "cases": len(rows), "cases_without_enhancing":
              sum(not row["reference_has_enhancing"] for row in rows), "chosen_on": chosen_on,
              "mean_enhancing_dice_by_ml": {str(m): round(s, 4) for m, s in scores.items()}, "per_case": rows}
    if record:
        update_bundle_record(bundle, lambda saved: saved.__setitem__(
            "postprocessing", {k: v for k, v in result.items() if k != "per_case"}))
    return result
