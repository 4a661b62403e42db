"""Probability calibration: Platt scaling fitted on out-of-fold scores, cross-fitted so that no
patient's calibrated probability used its own label, and how well probabilities are calibrated
(Brier score, expected calibration error, reliability diagram).

Platt scaling (a logistic regression on the one-dimensional score) rather than isotonic
regression: cohorts of tens of patients are too small for a step function (scikit-learn's
``CalibratedClassifierCV`` documentation advises the same below ~1,000 samples). Scores that
are probabilities already (the LSTM's mean sigmoid) are calibrated on their logit.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedKFold

RELIABILITY_BINS = 10
PROBABILITY_EPSILON = 1e-6  # keeps the logit of a saturated sigmoid finite
CROSS_FITTED = "Platt-scaled, cross-fitted"


def logit(probabilities: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p clipped away from 0 and 1."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
    return np.log(p / (1 - p))


class PlattCalibrator(BaseEstimator):
    """Probability = sigmoid(slope * score + offset), fitted by logistic regression on (score,
    label) pairs; ``on_logit`` first maps probability-valued scores to their logit."""

    def __init__(self, on_logit: bool = False) -> None:
        self.on_logit = on_logit

    def _feature(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        return (logit(scores) if self.on_logit else scores)[:, None]

    def fit(self, scores: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        # scikit-learn's default L2 penalty (C=1): a mild pull towards the prevalence on small
        # cohorts, which errs towards "uncertain" rather than overconfident
        model = LogisticRegression().fit(self._feature(scores), np.asarray(y, dtype=int))
        self.slope_, self.offset_ = float(model.coef_[0, 0]), float(model.intercept_[0])
        return self

    def predict_proba(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probability of the positive class (IDH-mutant), one per score."""
        return expit(self.slope_ * self._feature(scores)[:, 0] + self.offset_)

    def as_dict(self) -> dict[str, object]:
        return {"method": "Platt scaling" + (" of the logit" if self.on_logit else ""), "on_logit": self.on_logit,
                "slope": self.slope_, "offset": self.offset_}

    @classmethod
    def from_dict(cls, record: dict) -> PlattCalibrator:
        calibrator = cls(bool(record["on_logit"]))
        calibrator.slope_, calibrator.offset_ = float(record["slope"]), float(record["offset"])
        return calibrator


def cross_fitted_probabilities(scores: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0,
                               on_logit: bool = False) -> np.ndarray | None:
    """Calibrated probability of every patient from a calibrator fitted on the out-of-fold scores
    of the *other* patients (stratified ``folds``-fold over patients): the calibration is then
    validated the way the model is, and its ECE is not flattered by rating the patients it was
    fitted on. None when a class has fewer than 2 patients."""
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y, dtype=int)
    smallest = int(np.bincount(y, minlength=2).min())
    if smallest < 2:
        return None
    probabilities = np.full(len(y), np.nan)
    for train, test in StratifiedKFold(min(folds, smallest), shuffle=True, random_state=seed).split(scores, y):
        probabilities[test] = PlattCalibrator(on_logit).fit(scores[train], y[train]).predict_proba(scores[test])
    return probabilities


def expected_calibration_error(y: np.ndarray, probabilities: np.ndarray, bins: int = RELIABILITY_BINS) -> float:
    """Sum over equal-width probability bins of (share of patients) x |observed mutant rate -
    mean predicted probability| (Naeini et al., AAAI 2015; scikit-learn has no ECE)."""
    return float(sum(row["count"] * abs(row["observed"] - row["predicted"])
                     for row in reliability_table(y, probabilities, bins)) / len(y))


def reliability_table(y: np.ndarray, probabilities: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict[str, float]]:
    """Per non-empty equal-width bin: its range, patients, mean predicted probability and observed
    mutant rate (the points of a reliability diagram, as ``sklearn.calibration.calibration_curve``
    with its counts)."""
    y, probabilities = np.asarray(y, dtype=float), np.asarray(probabilities, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(np.sum(index == b)),
             "predicted": float(probabilities[index == b].mean()), "observed": float(y[index == b].mean())}
            for b in range(bins) if np.any(index == b)]


def calibration_summary(y: np.ndarray, probabilities: np.ndarray, probability: str, bins: int = RELIABILITY_BINS) -> dict[str, object]:
    """Brier score, ECE and the reliability table of probabilities for labels ``y`` (1 = mutant);
    ``probability`` says what they are (e.g. "Platt-scaled, cross-fitted")."""
    y, probabilities = np.asarray(y, dtype=int), np.asarray(probabilities, dtype=float)
    return {"probability": probability, "brier": float(brier_score_loss(y, probabilities)),
            "ece": expected_calibration_error(y, probabilities, bins),
            "reliability": reliability_table(y, probabilities, bins), "patients": int(len(y))}
