"""Binary classification metrics of the papers (AUC, ACC, SENS, SPEC, PPV, NPV, MCC) with
stratified percentile-bootstrap 95% confidence intervals. Undefined values (e.g. AUC with one
class, PPV with no positive call, MCC with an empty row or column) are ``None``, never NaN or 0,
so reports stay valid JSON and an undefined value never enters an average or a bootstrap."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

METRIC_KEYS = ("auc", "acc", "sens", "spec", "ppv", "npv", "mcc")
# Fewest patients of each class for a bootstrap interval: below this the resamples reuse the same
# handful of positives (or negatives) and the percentile interval shrinks towards zero width
# (a 5-patient split with one mutant gave "1.00 (1.00-1.00)"); no interval is then honest.
MIN_CLASS_FOR_CI = 10
TOO_FEW_FOR_CI = f"no interval: fewer than {MIN_CLASS_FOR_CI} patients in a class"


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def rank_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half), for labels holding both classes.

    The value of ``sklearn.metrics.roc_auc_score`` (a test checks), computed from ranks because
    its input validation costs ~7 ms a call, which made up most of the time of a bootstrap."""
    y_true = np.asarray(y_true, dtype=bool)
    positives = int(y_true.sum())
    ranks = rankdata(scores)
    return float((ranks[y_true].sum() - positives * (positives + 1) / 2) / (positives * (len(y_true) - positives)))


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.0) -> dict[str, float | None]:
    """Metrics of ``scores`` (higher = IDH-mutant) for labels ``y_true`` (1 = mutant); a patient is
    called mutant when its score is above ``threshold``."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    called = scores > threshold
    tp = float(np.sum(called & y_true))
    tn = float(np.sum(~called & ~y_true))
    fp = float(np.sum(called & ~y_true))
    fn = float(np.sum(~called & y_true))
    mcc_denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "auc": rank_auc(y_true, scores) if 0 < y_true.sum() < len(y_true) else None,
        "acc": _ratio(tp + tn, len(y_true)),
        "sens": _ratio(tp, tp + fn),
        "spec": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        # Matthews: undefined (None) when a row or column of the confusion matrix is empty;
        # scikit-learn returns 0 there, which would pass for "no better than chance"
        "mcc": float((tp * tn - fp * fn) / mcc_denominator) if mcc_denominator > 0 else None,
    }


def metrics_with_ci(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.0, resamples: int = 1000,
                    seed: int = 0, level: float = 0.95) -> dict[str, dict[str, float | str | None]]:
    """``{metric: {"value", "ci_low", "ci_high", "ci_note"}}``: point estimate and a stratified
    percentile-bootstrap CI over patients (each class resampled within itself, so every resample
    keeps the class sizes and AUC is always defined). With fewer than ``MIN_CLASS_FOR_CI``
    patients in a class the interval is None and ``ci_note`` says why."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    point = binary_metrics(y_true, scores, threshold)
    smallest_class = min(int(y_true.sum()), int((~y_true).sum()))
    if smallest_class < MIN_CLASS_FOR_CI:
        return {key: {"value": point[key], "ci_low": None, "ci_high": None, "ci_note": TOO_FEW_FOR_CI}
                for key in METRIC_KEYS}
    generator = np.random.default_rng(seed)
    classes = (np.flatnonzero(y_true), np.flatnonzero(~y_true))
    samples: dict[str, list[float]] = {key: [] for key in METRIC_KEYS}
    for _ in range(resamples):
        index = np.concatenate([generator.choice(members, len(members)) for members in classes])
        for key, value in binary_metrics(y_true[index], scores[index], threshold).items():
            if value is not None:
                samples[key].append(value)
    tail = 100 * (1 - level) / 2
    result = {}
    for key in METRIC_KEYS:
        values = samples[key]
        defined = len(values) >= resamples / 2  # e.g. PPV when most resamples call nobody mutant
        low, high = (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))) if defined else (None, None)
        result[key] = {"value": point[key], "ci_low": low, "ci_high": high,
                       "ci_note": None if defined else "no interval: undefined in most bootstrap resamples"}
    return result
