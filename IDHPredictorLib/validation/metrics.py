"""Binary classification metrics of the papers (AUC, ACC, SENS, SPEC, PPV, NPV, MCC) with
percentile-bootstrap 95% confidence intervals. Undefined values (e.g. AUC with one class,
PPV with no positive call) are ``None``, never NaN, so reports stay valid JSON."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

METRIC_KEYS = ("auc", "acc", "sens", "spec", "ppv", "npv", "mcc")


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


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
        "auc": float(roc_auc_score(y_true, scores)) if 0 < y_true.sum() < len(y_true) else None,
        "acc": _ratio(tp + tn, len(y_true)),
        "sens": _ratio(tp, tp + fn),
        "spec": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        # Matthews: 0 when a row or column of the confusion matrix is empty (scikit-learn's convention)
        "mcc": float((tp * tn - fp * fn) / mcc_denominator) if mcc_denominator > 0 else 0.0,
    }


def metrics_with_ci(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.0, resamples: int = 1000,
                    seed: int = 0, level: float = 0.95) -> dict[str, dict[str, float | None]]:
    """``{metric: {"value", "ci_low", "ci_high"}}``: point estimate and percentile-bootstrap CI over
    patients (resamples where a metric is undefined are skipped for that metric)."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    point = binary_metrics(y_true, scores, threshold)
    generator = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {key: [] for key in METRIC_KEYS}
    for _ in range(resamples):
        index = generator.integers(0, len(y_true), len(y_true))
        for key, value in binary_metrics(y_true[index], scores[index], threshold).items():
            if value is not None:
                samples[key].append(value)
    tail = 100 * (1 - level) / 2
    result = {}
    for key in METRIC_KEYS:
        values = samples[key]
        low, high = (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))) if values else (None, None)
        result[key] = {"value": point[key], "ci_low": low, "ci_high": high}
    return result
