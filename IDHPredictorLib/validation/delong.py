"""DeLong's test for two correlated ROC AUCs on the same patients (DeLong et al. 1988), in the
fast midrank form of Sun & Xu (2014). Neither scipy nor scikit-learn provides it."""

from __future__ import annotations

import numpy as np
from scipy import stats


def _placements(scores: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the structural components V10 (per positive) and V01 (per negative)."""
    pos, neg = scores[positive], scores[~positive]
    # fraction of negatives below each positive (ties count half), and of positives above each negative
    v10 = (np.sum(neg[None, :] < pos[:, None], axis=1) + 0.5 * np.sum(neg[None, :] == pos[:, None], axis=1)) / len(neg)
    v01 = (np.sum(pos[None, :] > neg[:, None], axis=1) + 0.5 * np.sum(pos[None, :] == neg[:, None], axis=1)) / len(pos)
    return float(v10.mean()), v10, v01


def delong_test(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> dict[str, float]:
    """AUCs of two scores for the same patients, their difference, the variance of the difference,
    z and the two-sided p-value."""
    positive = np.asarray(y_true).astype(bool)
    if positive.all() or not positive.any():
        raise ValueError("DeLong's test needs both classes")
    auc_a, v10_a, v01_a = _placements(np.asarray(scores_a, float), positive)
    auc_b, v10_b, v01_b = _placements(np.asarray(scores_b, float), positive)
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    covariance = s10 / positive.sum() + s01 / (~positive).sum()
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    z = (auc_a - auc_b) / np.sqrt(variance) if variance > 0 else 0.0
    return {"auc_a": auc_a, "auc_b": auc_b, "difference": auc_a - auc_b, "variance": float(variance), "z": float(z),
            "p_value": float(2 * stats.norm.sf(abs(z)))}
