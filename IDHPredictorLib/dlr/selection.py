"""Feature selection of Li et al. 2017: a t-test keeping p < 0.05, then the top k by F-score.

Both are scikit-learn selectors, so they are fitted on the training fold only when they sit in a
``Pipeline``. Written here because scikit-learn has neither Welch's t-test as a selector that
never returns zero features (``SelectFpr`` can, which breaks the SVM after it on a permuted
cohort) nor the F-score of Chen & Lin (2006) (``f_classif`` is the ANOVA F statistic).

Deviation from the paper: Li et al. write "t-test"; we use Welch's (unequal variances), since the
Fisher-vector entries of the two genotypes need not share a variance and the classes are
unbalanced (about 1 mutant in 3), where Student's test is anti-conservative.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_X_y


def two_class_targets(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` as float64, ``y`` as a boolean "second class" mask and the two classes (sorted, as
    scikit-learn's ``LabelEncoder`` orders them: for 0/1 labels True means 1). Refuses continuous
    targets and anything but exactly two classes, rather than casting {1, 2} or strings to all True."""
    X, y = check_X_y(X, y, dtype=np.float64, ensure_all_finite=False)
    check_classification_targets(y)
    classes = np.unique(y)
    if len(classes) != 2:
        raise ValueError(f"feature selection needs exactly two classes, got {len(classes)}: {classes.tolist()}")
    return X, y == classes[1], classes


class WelchTTestSelector(SelectorMixin, BaseEstimator):
    """Keep features whose two-sample Welch t-test between classes has p < ``alpha``; at least
    ``min_features`` (the smallest p-values) so that the next step always gets input."""

    def __init__(self, alpha: float = 0.05, min_features: int = 1) -> None:
        self.alpha = alpha
        self.min_features = min_features

    def fit(self, X: np.ndarray, y: np.ndarray) -> WelchTTestSelector:
        X, y, self.classes_ = two_class_targets(X, y)
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
    X, y, _ = two_class_targets(X, y)
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
