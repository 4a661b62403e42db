"""Label-permutation test of the perfusion LSTM: the cross-validation of the development
patients repeated under shuffled labels (the null distribution and p-value: ``validation.permutation``).

The DSC analysis (curves, windows) never sees a label, so it is done once and reused by every
shuffle; each shuffle retrains the fold networks. The folds stay those of the true labels, which
only sets which patients are tested together, never what a network sees.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from ..compute import ordered_results
from ..validation.permutation import null_summary
from ..validation.splits import Split
from .training import LstmTraining, fold_jobs


def lstm_permutation_test(windows: np.ndarray, y: np.ndarray, development: np.ndarray, folds: list[Split],
                          options: LstmTraining, observed_auc: float, shuffles: int, seed: int = 0, workers: int = 1,
                          progress: Callable[[int, int], None] | None = None) -> dict[str, object]:
    """Pooled out-of-fold AUC over ``development`` for ``shuffles`` permutations of its labels
    (``folds`` index all patients, as the main cross-validation's do), against ``observed_auc``, the
    same cross-validation's AUC with the true labels."""
    if shuffles < 1:
        raise ValueError("a permutation test needs at least one shuffle")
    generator = np.random.default_rng(seed)
    labellings = []
    for _ in range(shuffles):
        labels = np.array(y, copy=True)
        labels[development] = generator.permutation(y[development])
        labellings.append(labels)
    jobs = [job for labels in labellings for job in fold_jobs(windows, labels, folds, options)]
    probabilities = [np.full(len(y), np.nan) for _ in labellings]
    for done, (fold_probabilities, _attention) in enumerate(ordered_results(jobs, workers)):
        shuffle, fold = divmod(done, len(folds))
        probabilities[shuffle][folds[fold][1]] = fold_probabilities
        if progress:
            progress(done + 1, len(jobs))
    null = [roc_auc_score(labels[development], scores[development]) for labels, scores in zip(labellings, probabilities)]
    return null_summary(observed_auc, null, len(folds))
