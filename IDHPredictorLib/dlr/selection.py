"""Feature selection of Li et al. 2017: a t-test keeping p < 0.05, then the top k by F-score.

Both are scikit-learn selectors, so they are fitted on the training fold only when they sit in a
``Pipeline``. Written here because scikit-learn has neither Welch's t-test as a selector that
never returns zero features (``SelectFpr`` can, which breaks the SVM after it on a permuted
cohort) nor the F-score of Chen & Lin (2006) (``f_classif`` is the ANOVA F statistic).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted


class WelchTTestSelector(SelectorMixin, BaseEstimator):
    """Keep features whose two-sample Welch t-test between classes has p < ``alpha``; at least
    ``min_features`` (the smallest p-values) so that the next step always gets input."""

    def __init__(self, alpha: float = 0.05, min_features: int = 1) -> None:
        self.alpha = alpha
        self.min_features = min_features

    def fit(self, X: np.ndarray, y: np.ndarray) -> WelchTTestSelector:
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y).astype(bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            _, p_values = stats.ttest_ind(X[y], X[~y], axis=0, equal_var=False)
        self.p_values_ = np.where(np.isfinite(p_values), p_values, 1.0)  # constant features: never significant
        self.n_features_in_ = X.shape[1]
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "p_values_")
        mask = self.p_values_ < self.alpha
        if mask.sum() < self.min_features:
            mask[np.argsort(self.p_values_, kind="stable")[:self.min_features]] = True
        return mask


def f_scores(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """F-score of Chen & Lin (2006) per feature: between-class over within-class spread."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y).astype(bool)
    positive, negative = X[y], X[~y]
    mean = X.mean(axis=0)
    between = (positive.mean(axis=0) - mean) ** 2 + (negative.mean(axis=0) - mean) ** 2
    within = sum(group.var(axis=0, ddof=1) if len(group) > 1 else np.zeros(X.shape[1]) for group in (positive, negative))
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = between / within
    return np.where(np.isfinite(scores), scores, 0.0)


class FScoreSelector(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features with the highest F-score (all of them when fewer than k)."""

    def __init__(self, k: int = 32) -> None:
        self.k = k

    def fit(self, X: np.ndarray, y: np.ndarray) -> FScoreSelector:
        self.scores_ = f_scores(X, y)
        self.n_features_in_ = len(self.scores_)
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "scores_")
        mask = np.zeros(len(self.scores_), bool)
        mask[np.argsort(-self.scores_, kind="stable")[:self.k]] = True
        return mask
