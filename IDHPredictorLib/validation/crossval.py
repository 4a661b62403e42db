"""Out-of-fold decision scores: a fresh model is fitted on each training fold only."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from joblib import delayed

from ..compute import ordered_results
from .splits import Split


def take(X: Sequence | np.ndarray, index: np.ndarray) -> Sequence | np.ndarray:
    """Rows ``index`` of a feature matrix or of a per-patient list (e.g. descriptor arrays)."""
    return X[index] if isinstance(X, np.ndarray) else [X[i] for i in index]


def fold_scores(make_model: Callable[[], object], X: Sequence | np.ndarray, y: np.ndarray, train: np.ndarray,
                 test: np.ndarray) -> np.ndarray:
    """Fit a fresh ``make_model()`` on the ``train`` samples and return the ``test`` samples' decision scores."""
    if len(np.unique(y[train])) < 2:
        raise ValueError("a training fold holds one class only; use fewer folds or a larger cohort")
    model = make_model()
    model.fit(take(X, train), y[train])
    return model.decision_function(take(X, test))


def out_of_fold_scores(make_model: Callable[[], object], X: Sequence | np.ndarray, y: np.ndarray,
                       splits: list[Split], progress: Callable[[int, int], None] | None = None,
                       workers: int = 1) -> np.ndarray:
    """Decision score of every tested sample from the model of the fold that held it out (NaN for
    samples no fold tests, e.g. the training side of a temporal split). Folds run on the Dask
    cluster when one is in use (``compute.use_scheduler``), else in ``workers`` local processes."""
    y = np.asarray(y)
    scores = np.full(len(y), np.nan)
    jobs = [delayed(fold_scores)(make_model, X, y, train, test) for train, test in splits]
    for done, ((_, test), values) in enumerate(zip(splits, ordered_results(jobs, workers))):
        scores[test] = values
        if progress:
            progress(done + 1, len(splits))
    return scores
