"""Label-permutation test of DLR: the null distribution of the cross-validated AUC under shuffled
labels, and an empirical p-value for the true labels' AUC.

One shuffle (``--permute-labels``) has a null spread of about +-0.12 at 48 patients, so it shows
only gross leakage. Here the Fisher-vector encoding of each fold, which never sees a label (the
GMM is unsupervised and fitted on the fold's training patients), is computed once and reused by
every shuffle; only the label-dependent steps (selectors, scaler, SVM, inner choice of k) are
refitted per shuffle, inside each training fold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from ..validation.crossval import take
from ..validation.splits import Split, repeated_kfold
from .fisher import FisherVectorEncoder
from .model import selection_classifier

DEFAULT_SHUFFLES = 20


def encode_folds(descriptors: Sequence[np.ndarray], splits: list[Split], components: int, seed: int,
                 progress: Callable[[int, int], None] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training, test) Fisher vectors of each fold, the GMM fitted on the training patients only."""
    encoded = []
    for done, (train, test) in enumerate(splits, start=1):
        encoder = FisherVectorEncoder(n_components=components, random_state=seed).fit(take(descriptors, train))
        encoded.append((encoder.transform(take(descriptors, train)), encoder.transform(take(descriptors, test))))
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
                     progress: Callable[[int, int], None] | None = None) -> dict[str, object]:
    """Stratified ``folds``-fold AUC of DLR with the true labels and under ``shuffles`` label
    permutations. The p-value counts the true AUC as one of the permutations
    ((1 + #null >= observed) / (1 + shuffles)), so it is never 0."""
    y = np.asarray(y, dtype=int)
    if shuffles < 1:
        raise ValueError("a permutation test needs at least one shuffle")
    # the folds are fixed across shuffles so that each fold's encoding can be reused; stratified on
    # the true labels, which only sets which patients are tested together, never what a model sees
    splits = repeated_kfold(y, folds, 1, seed)[0]
    steps = len(splits) + shuffles + 1
    encoded = encode_folds(descriptors, splits, components, seed, (lambda d, _t: progress(d, steps)) if progress else None)
    observed = _cross_validated_auc(encoded, splits, y, k, seed)
    generator = np.random.default_rng(seed)
    null = []
    for shuffle in range(shuffles):
        permuted = generator.permutation(y)
        null.append(_cross_validated_auc(encoded, splits, permuted, k, seed))
        if progress:
            progress(len(splits) + shuffle + 2, steps)
    null_array = np.array(null)
    return {"observed_auc": observed, "null_aucs": [round(v, 4) for v in null], "null_mean": float(null_array.mean()),
            "null_sd": float(null_array.std(ddof=1)) if shuffles > 1 else None, "shuffles": shuffles, "folds": folds,
            "p_value": float((1 + np.sum(null_array >= observed)) / (1 + shuffles))}


def permutation_text(result: dict[str, object]) -> str:
    """One line: the true AUC, the null distribution and the p-value."""
    return (f"permutation test ({result['shuffles']} shuffles, {result['folds']}-fold): AUC {result['observed_auc']:.3f}, "
            f"null {result['null_mean']:.3f} +- {result['null_sd'] or 0:.3f}, p = {result['p_value']:.3f}; leakage check "
            f"{'passed' if leakage_verdict(result) else 'FAILED (null not centred on 0.5)'}")


def leakage_verdict(result: dict[str, object]) -> bool:
    """True when the null distribution is centred on chance: its mean within three standard errors
    (and at most 0.1) of 0.5. A pipeline that leaks labels into the features scores well above
    0.5 under every shuffle."""
    shuffles, mean, sd = result["shuffles"], result["null_mean"], result["null_sd"] or 0.12
    return abs(mean - 0.5) <= min(0.1, 3 * sd / np.sqrt(shuffles))
