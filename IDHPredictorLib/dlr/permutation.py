"""Label-permutation test of DLR (the null distribution and p-value: ``validation.permutation``).

The Fisher-vector encoding of each fold, which never sees a label (the GMM is unsupervised and
fitted on the fold's training patients), is computed once and reused by every shuffle; only the
label-dependent steps (selectors, scaler, SVM, inner choice of k) are refitted per shuffle,
inside each training fold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from joblib import delayed
from sklearn.metrics import roc_auc_score

from ..compute import ordered_results
from ..validation.crossval import take
from ..validation.permutation import DEFAULT_SHUFFLES, null_summary
from ..validation.splits import Split, repeated_kfold
from .fisher import FisherVectorEncoder
from .model import selection_classifier


def _encode_fold(descriptors: Sequence[np.ndarray], split: Split, components: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    train, test = split
    encoder = FisherVectorEncoder(n_components=components, random_state=seed).fit(take(descriptors, train))
    return encoder.transform(take(descriptors, train)), encoder.transform(take(descriptors, test))


def encode_folds(descriptors: Sequence[np.ndarray], splits: list[Split], components: int, seed: int,
                 progress: Callable[[int, int], None] | None = None, workers: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training, test) Fisher vectors of each fold, the GMM fitted on the training patients only."""
    encoded = []
    jobs = [delayed(_encode_fold)(descriptors, split, components, seed) for split in splits]
    for done, vectors in enumerate(ordered_results(jobs, workers), start=1):
        encoded.append(vectors)
        if progress:
            progress(done, len(splits))
    return encoded


def _cross_validated_auc(encoded: list[tuple[np.ndarray, np.ndarray]], splits: list[Split], y: np.ndarray,
                         k: int | str, seed: int) -> float:
    scores = np.full(len(y), np.nan)
    for (train_vectors, test_vectors), (train, test) in zip(encoded, splits):
        scores[test] = selection_classifier(k, seed).fit(train_vectors, y[train]).decision_function(test_vectors)
    return float(roc_auc_score(y, scores))


def permutation_test(descriptors: Sequence[np.ndarray], y: np.ndarray, shuffles: int = DEFAULT_SHUFFLES,
                     folds: int = 5, k: int | str = "auto", components: int = 64, seed: int = 0,
                     progress: Callable[[int, int], None] | None = None, workers: int = 1) -> dict[str, object]:
    """Stratified ``folds``-fold AUC of DLR with the true labels and under ``shuffles`` label
    permutations. Folds and shuffles run in ``workers`` processes; the shuffles are drawn
    beforehand, so the result does not depend on how many."""
    y = np.asarray(y, dtype=int)
    if shuffles < 1:
        raise ValueError("a permutation test needs at least one shuffle")
    # the folds are fixed across shuffles so that each fold's encoding can be reused; stratified on
    # the true labels, which only sets which patients are tested together, never what a model sees
    splits = repeated_kfold(y, folds, 1, seed)[0]
    steps = len(splits) + shuffles + 1
    encoded = encode_folds(descriptors, splits, components, seed, (lambda d, _t: progress(d, steps)) if progress else None,
                           workers)
    generator = np.random.default_rng(seed)
    labellings = [y, *(generator.permutation(y) for _ in range(shuffles))]
    aucs = []
    for auc in ordered_results([delayed(_cross_validated_auc)(encoded, splits, labels, k, seed) for labels in labellings], workers):
        aucs.append(auc)
        if progress:
            progress(len(splits) + len(aucs), steps)
    return null_summary(aucs[0], aucs[1:], folds)
