"""Class-conditional (Mondrian) split conformal prediction sets over a calibrated probability.

For a coverage 1 - alpha, each class c keeps the nonconformity scores 1 - p_c of its own
calibration patients; a new patient's set holds every class whose score is at most that
class's conformal quantile (the ceil((n_c + 1)(1 - alpha))-th smallest). Each class then gets
its own guarantee, P(true class in set | class c) >= 1 - alpha, for patients exchangeable with
the calibration patients (Vovk et al. 2005, Algorithmic Learning in a Random World, ch. 4;
Angelopoulos & Bates 2023, sec. 4.1). A set with both classes means "uncertain".

Written here rather than taken from MAPIE: the calibration scores are out-of-fold
probabilities that already exist, not a classifier to wrap, and the method is a quantile.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator

CLASS_NAMES = ("wildtype", "mutant")  # index = label (1 = IDH-mutant)
DEFAULT_COVERAGE = 0.9


class ClassConditionalConformal(BaseEstimator):
    """Prediction sets at ``coverage`` from calibration probabilities of IDH mutation."""

    def __init__(self, coverage: float = DEFAULT_COVERAGE) -> None:
        self.coverage = coverage

    def fit(self, probabilities: np.ndarray, y: np.ndarray) -> ClassConditionalConformal:
        if not 0.0 < self.coverage < 1.0:
            raise ValueError(f"coverage {self.coverage} must lie strictly between 0 and 1")
        probabilities, y = np.asarray(probabilities, dtype=float), np.asarray(y, dtype=int)
        # kept, so that the sets can be re-derived at another coverage (``at_coverage``)
        self.calibration_scores_ = [np.sort(1.0 - _class_probability(probabilities[y == label], label)) for label in (0, 1)]
        self.thresholds_ = [_conformal_threshold(scores, self.coverage) for scores in self.calibration_scores_]
        self.calibration_counts_ = [int(np.sum(y == 0)), int(np.sum(y == 1))]
        return self

    def at_coverage(self, coverage: float) -> ClassConditionalConformal:
        """The same calibration at another coverage (needs the calibration scores: a record
        written before they were stored cannot)."""
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage {coverage} must lie strictly between 0 and 1")
        if getattr(self, "calibration_scores_", None) is None:
            raise ValueError(f"these prediction sets store only their {self.coverage:.0%} thresholds, not the calibration scores")
        other = ClassConditionalConformal(coverage)
        other.calibration_scores_, other.calibration_counts_ = self.calibration_scores_, self.calibration_counts_
        other.thresholds_ = [_conformal_threshold(scores, coverage) for scores in self.calibration_scores_]
        return other

    def predict_sets(self, probabilities: np.ndarray) -> np.ndarray:
        """(patients, 2) booleans: column c is True when class c (0 wildtype, 1 mutant) is in the set."""
        probabilities = np.asarray(probabilities, dtype=float)
        return np.column_stack([1.0 - _class_probability(probabilities, label) <= self.thresholds_[label]
                                for label in (0, 1)])

    def as_dict(self) -> dict[str, object]:
        return {"coverage": self.coverage, "thresholds": {CLASS_NAMES[c]: _finite(t) for c, t in enumerate(self.thresholds_)},
                "calibration_patients": dict(zip(CLASS_NAMES, self.calibration_counts_)),
                "calibration_scores": {CLASS_NAMES[c]: scores.tolist() for c, scores in enumerate(self.calibration_scores_)}}

    @classmethod
    def from_dict(cls, record: dict) -> ClassConditionalConformal:
        conformal = cls(float(record["coverage"]))
        conformal.thresholds_ = [math.inf if record["thresholds"][n] is None else float(record["thresholds"][n]) for n in CLASS_NAMES]
        conformal.calibration_counts_ = [int(record["calibration_patients"][n]) for n in CLASS_NAMES]
        scores = record.get("calibration_scores")
        conformal.calibration_scores_ = None if scores is None else [np.asarray(scores[n], dtype=float) for n in CLASS_NAMES]
        return conformal


def _conformal_threshold(scores: np.ndarray, coverage: float) -> float:
    """The ceil((n + 1) * coverage)-th smallest of a class's sorted scores; infinite (the class is
    never ruled out) when the class has too few calibration patients for this coverage."""
    rank = math.ceil((len(scores) + 1) * coverage)
    return float(scores[rank - 1]) if rank <= len(scores) else math.inf


def _class_probability(probabilities: np.ndarray, label: int) -> np.ndarray:
    return probabilities if label == 1 else 1.0 - probabilities


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


def set_label(members: np.ndarray) -> str:
    """'mutant', 'wildtype', 'uncertain' (both) or 'empty' (neither: the case is unlike both
    classes' calibration patients at this coverage)."""
    wildtype, mutant = bool(members[0]), bool(members[1])
    return {(True, True): "uncertain", (False, True): "mutant", (True, False): "wildtype"}.get((wildtype, mutant), "empty")


def coverage_report(sets: np.ndarray, y: np.ndarray) -> dict[str, object]:
    """Observed coverage overall and per class, and the share of uncertain (two-class) sets."""
    y = np.asarray(y, dtype=int)
    covered = sets[np.arange(len(y)), y]
    return {"coverage": {"overall": float(covered.mean()),
                         **{CLASS_NAMES[c]: float(covered[y == c].mean()) if np.any(y == c) else None for c in (0, 1)}},
            "uncertain_fraction": float(np.mean(sets.all(axis=1))), "empty_fraction": float(np.mean(~sets.any(axis=1)))}


def repeated_split_coverage(probabilities: np.ndarray, y: np.ndarray, coverage: float = DEFAULT_COVERAGE,
                            repeats: int = 200, seed: int = 0) -> dict[str, object]:
    """Empirical check of the guarantee: ``repeats`` random halvings of the patients (stratified),
    conformal fitted on one half and measured on the other; mean and spread of the coverage per
    class and of the uncertain share."""
    probabilities, y = np.asarray(probabilities, dtype=float), np.asarray(y, dtype=int)
    generator = np.random.default_rng(seed)
    rows = []
    for _ in range(repeats):
        calibration = np.concatenate([generator.permutation(np.flatnonzero(y == c))[: int(np.sum(y == c)) // 2] for c in (0, 1)])
        held = np.setdiff1d(np.arange(len(y)), calibration)
        conformal = ClassConditionalConformal(coverage).fit(probabilities[calibration], y[calibration])
        report = coverage_report(conformal.predict_sets(probabilities[held]), y[held])
        rows.append([report["coverage"]["wildtype"], report["coverage"]["mutant"], report["coverage"]["overall"],
                     report["uncertain_fraction"]])
    table = np.asarray(rows, dtype=float)
    names = ("wildtype", "mutant", "overall", "uncertain_fraction")
    return {"coverage_nominal": coverage, "repeats": repeats, "calibration_share": 0.5,
            **{name: {"mean": float(table[:, i].mean()), "sd": float(table[:, i].std(ddof=1))} for i, name in enumerate(names)}}
