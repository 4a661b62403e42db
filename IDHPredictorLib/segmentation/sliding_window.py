"""Choose a 3-D bundle's sliding-window size on a labelled SIMULATED cohort, and record it.

The 3-D network is trained on small crops, but it is fully convolutional and its group
normalisation sees the whole window, so a larger window at inference gives it more context and
steadier statistics. Which size is best is measured, not assumed: every candidate segments the
cohort (without the smallest-enhancing-volume rule, which ``enhancing_rule`` chooses afterwards
for the chosen window), and the one with the best mean of whole-tumour, core and enhancing Dice
wins (the smallest on a tie: it is the fastest). Real cases are never used to choose it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError

CANDIDATE_WINDOWS = (96, 128, 160, 192)


def window_row(bundle: str, folder: Path, window: int) -> dict[str, object] | None:
    """One labelled case segmented rule-free with sliding window ``window``: its Dice per region
    (None for a folder without images or labels)."""
    from .evaluation import region_metrics, segment_labelled_case

    case = segment_labelled_case(bundle, folder, rule_free=True, window=window)
    if case is None:
        return None
    dice = {region: values["dice"] for region, values in region_metrics(case.predicted, case.reference).items()}
    return {"case_id": case.case_id, "window": window, **dice, "seconds": round(case.seconds, 1)}


def choose_window(cohort_dir: str | Path, bundle: str | Path, record: bool = False, workers: int = 1,
                  progress: Callable[[str], None] | None = None,
                  candidates: tuple[int, ...] = CANDIDATE_WINDOWS) -> dict[str, object]:
    """Segment the simulated cohort with each of ``candidates`` (and the training crop), score
    each by the mean Dice over cases and regions, and (``record``) write the best into the
    bundle as its ``architecture.window``, with the scores under ``inference.window_choice``."""
    from ..bundle import update_bundle_record
    from ..compute import all_succeeded, map_cases
    from ..io.cohort import case_folders, cohort_record
    from .model_bundle import load_model

    chosen_on = cohort_record(cohort_dir)
    if "phantom" not in chosen_on:
        raise InputError(cohort_dir, "is not a simulated (phantom) cohort",
                         "Choose the window on simulated cases (idh-predictor phantom), so that real cases stay a test")
    model = load_model(bundle)
    if not model.is_volumetric:
        raise InputError(bundle, "is a 2-D network, which runs on whole slices: it has no sliding window to choose",
                         "Choose the window of a 3-D (segresnet) bundle")
    folders = case_folders(cohort_dir)
    bundle_path = str(Path(bundle).resolve())
    scores: dict[int, float] = {}
    rows: list[dict[str, object]] = []
    for window in sorted({*candidates, model.network.architecture.crop}):
        found = [row for row in all_succeeded(map_cases(window_row, [(bundle_path, f, window) for f in folders],
                                                        [f.name for f in folders], workers),
                                              f"segmenting with a {window}-voxel window") if row is not None]
        if not found:
            raise InputError(cohort_dir, "has no case with a label map", "Choose the window on a labelled simulated cohort")
        scores[window] = float(np.mean([[r["whole_tumour"], r["tumour_core"], r["enhancing"]] for r in found]))
        rows += found
        if progress is not None:
            progress(f"window {window}: mean Dice {scores[window]:.3f} on {len(found)} cases")
    best = max(scores.values())
    chosen = min(w for w, score in scores.items() if score >= best - 1e-9)
    result = {"window": chosen, "cases": len(rows) // len(scores), "chosen_on": chosen_on,
              "mean_dice_by_window": {str(w): round(s, 4) for w, s in scores.items()}, "per_case": rows}

    def write(saved: dict) -> None:
        saved["architecture"]["window"] = chosen
        inference = saved.setdefault("inference", {})
        inference["window"] = chosen
        inference["window_choice"] = {k: v for k, v in result.items() if k != "per_case"}

    if record:
        update_bundle_record(bundle, write)
    return result
