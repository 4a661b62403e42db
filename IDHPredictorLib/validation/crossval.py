"""Out-of-fold decision scores: a fresh model is fitted on each training fold only."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .splits import Split


def take(X: Sequence | np.ndarray, index: np.ndarray) -> Sequence | np.ndarray:
    """Rows ``index`` of a feature matrix or of a per-patient list (e.g. descriptor arrays)."""
    return X[index] if isinstance(X, np.ndarray) else [X[i] for i in index]


def out_of_fold_scores(make_model: Callable[[], object], X: Sequence | np.ndarray, y: np.ndarray,
                       splits: list[Split], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Decision score of every tested sample from the model of the fold that held it out (NaN for
    samples no fold tests, e.g. the training side of a temporal split)."""
    y = np.asarray(y)
    scores = np.full(len(y), np.nan)
    for done, (train, test) in enumerate(splits):
        if len(np.unique(y[train])) < 2:
            raise ValueError("a training fold holds one class only; use fewer folds or a larger cohort")
        model = make_model()
        model.fit(take(X, train), y[train])
        scores[test] = model.decision_function(take(X, test))
        if progress:
            progress(done + 1, len(splits))
    return scores
