"""Improved Fisher vector encoding (Perronnin et al. 2010) of a patient's deep descriptors.

Layout as VLFeat's ``vl_fisher``: the first-order block u (K x D, component-major) then the
second-order block v (K x D), no mixture-weight terms; signed square root, then L2 norm.

    u_k = 1 / (N sqrt(w_k))   * sum_i g_ik (x_i - mu_k) / sigma_k
    v_k = 1 / (N sqrt(2 w_k)) * sum_i g_ik [((x_i - mu_k) / sigma_k)^2 - 1]

Written here rather than calling ``skimage.feature.fisher_vector``: that function adds K weight
terms, flips the sign of the variance block, needs a fitted ``GaussianMixture`` object (a saved
DLR bundle holds plain arrays) and computes all N x K posteriors and statistics in float64 with
four dense matrix products. Deep descriptors in 128 dimensions are almost always owned by one
component, so this encoder:

1. scores every descriptor against every component in float32 (one matrix product of the
   descriptors and their squares, centred on the mixture mean to keep the float32 error far below
   ``SCORE_MARGIN``);
2. keeps, per descriptor, the components whose score is within ``POSTERIOR_CUTOFF`` +
   ``SCORE_MARGIN`` nats of its best (on the phantom cohort 1.3 per descriptor on average);
   a descriptor with one such component has posterior exactly 1 for it, the others' log-posteriors
   are recomputed exactly in float64;
3. accumulates the zeroth-, first- and second-order sums over those (descriptor, component) pairs
   only, in float64.

Steps 1 to 3 are one compiled function (numba): per-descriptor branching over a varying number
of components has no efficient NumPy form, and NumPy's multi-megabyte temporaries cost more in
page faults than the products themselves. Rows are split into chunks that run on numba's threads,
each calling BLAS single-threaded. Posteriors below exp(-POSTERIOR_CUTOFF) ~ 1e-14 relative to a
descriptor's best component are zero (VLFeat drops those below 1e-6). On conv6 descriptors of the
phantom the result equals skimage's float64 one to ~1e-12, 8-9x faster on two cores
(``Testing/Benchmarks/bench_dlr.py``); the float32 product of step 1 is most of the remaining time.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numba
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

POSTERIOR_CUTOFF = 32.0  # nats below a descriptor's best component: posterior taken as 0 (e^-32 = 1.3e-14)
SCORE_MARGIN = 2.0  # nats added for the float32 scores' rounding; the largest error seen was 0.01 nats
ROWS_PER_THREAD = 2048  # fewer rows than this per chunk cost more in thread hand-off than they save
BLOCK_ROWS = 1024  # descriptors scored at a time, into reused buffers: fresh multi-megabyte temporaries
#                    per call cost more in page faults than the matrix products themselves


@dataclass(frozen=True)
class MixtureTables:
    """A diagonal GMM in the forms the encoder needs; built once per GMM, reused for every patient."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, D) float64
    variances: np.ndarray  # (K, D) float64
    precisions: np.ndarray  # (K, D) float64, 1 / variances
    log_norms: np.ndarray  # (K,) log w_k - 0.5 sum_d log(2 pi var_kd)
    centre: np.ndarray  # (D,) mixture mean, subtracted before the float32 scores and the moments
    linear: np.ndarray  # (D, K) float32, (mu - centre) / var
    quadratic: np.ndarray  # (D, K) float32, -1 / (2 var)
    offset: np.ndarray  # (K,) float32, score constant

    @classmethod
    def from_gmm(cls, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> MixtureTables:
        """Tables of the GMM with these weights (K,), means and variances (K, D)."""
        weights, means, variances = (np.asarray(a, dtype=np.float64) for a in (weights, means, variances))
        if means.ndim != 2 or variances.shape != means.shape or weights.shape != (len(means),):
            raise ValueError(f"GMM arrays disagree: weights {weights.shape}, means {means.shape}, variances {variances.shape}")
        precisions = 1.0 / variances
        log_norms = np.log(weights) - 0.5 * np.sum(np.log(2 * np.pi * variances), axis=1)
        centre = weights @ means
        centred = means - centre
        return cls(weights, means, variances, precisions, log_norms, centre,
                   np.ascontiguousarray((centred * precisions).T, dtype=np.float32),
                   np.ascontiguousarray((-0.5 * precisions).T, dtype=np.float32),
                   (log_norms - 0.5 * np.sum(centred ** 2 * precisions, axis=1)).astype(np.float32))


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _add_posterior_sums(descriptors: np.ndarray, scores: np.ndarray, centre: np.ndarray, means: np.ndarray,
                        precisions: np.ndarray, log_norms: np.ndarray, cutoff: float, zeroth: np.ndarray,
                        first: np.ndarray, second: np.ndarray) -> None:
    """Add q_ik, q_ik c_i and q_ik c_i^2 (c = x - centre) over descriptors i to ``zeroth`` (K,), ``first``, ``second`` (K, D).

    q_ik is the exact posterior over the components scoring within ``cutoff`` of the best one
    (1 when only the best does) and 0 for all others. Centred moments keep float64 accuracy for
    descriptors far from the origin.
    """
    count, dims = descriptors.shape
    components = means.shape[0]
    candidates = np.empty(components, np.int64)
    posteriors = np.empty(components)
    for i in range(count):
        row = scores[i]
        x = descriptors[i]
        best = row[0]
        for k in range(1, components):
            best = max(best, row[k])
        found = 0
        for k in range(components):
            if row[k] >= best - cutoff:
                candidates[found] = k
                found += 1
        if found == 1:
            posteriors[0] = 1.0
        else:
            top = -np.inf
            for a in range(found):
                k = candidates[a]
                distance = 0.0
                for d in range(dims):
                    difference = x[d] - means[k, d]
                    distance += difference * difference * precisions[k, d]
                posteriors[a] = log_norms[k] - 0.5 * distance
                top = max(top, posteriors[a])
            total = 0.0
            for a in range(found):
                posteriors[a] = np.exp(posteriors[a] - top)
                total += posteriors[a]
            for a in range(found):
                posteriors[a] /= total
        for a in range(found):
            k = candidates[a]
            q = posteriors[a]
            zeroth[k] += q
            first_k = first[k]
            second_k = second[k]
            for d in range(dims):
                first_k[d] += q * (x[d] - centre[d])
            for d in range(dims):
                second_k[d] += q * (x[d] - centre[d]) ** 2


@numba.njit(parallel=True, cache=True)
def _posterior_sums(descriptors: np.ndarray, centre: np.ndarray, linear: np.ndarray, quadratic: np.ndarray,
                    offset: np.ndarray, means: np.ndarray, precisions: np.ndarray, log_norms: np.ndarray,
                    cutoff: float, chunks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of q_ik, q_ik c_i and q_ik c_i^2 (c = x - centre) per component k (float64), in ``chunks`` parallel row ranges.

    Each chunk scores BLOCK_ROWS descriptors at a time in float32 (x - centre and its square times
    ``linear`` and ``quadratic``, plus ``offset``) into buffers it reuses, then adds their posterior sums.
    """
    count, dims = descriptors.shape
    components = means.shape[0]
    zeroth = np.zeros((chunks, components))
    first = np.zeros((chunks, components, dims))
    second = np.zeros((chunks, components, dims))
    step = (count + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        centred = np.empty((BLOCK_ROWS, dims), np.float32)
        squares = np.empty((BLOCK_ROWS, dims), np.float32)
        scores = np.empty((BLOCK_ROWS, components), np.float32)
        quadratic_part = np.empty((BLOCK_ROWS, components), np.float32)
        stop = min(count, (chunk + 1) * step)
        for start in range(chunk * step, stop, BLOCK_ROWS):
            rows = min(BLOCK_ROWS, stop - start)
            block = descriptors[start:start + rows]
            for i in range(rows):
                for d in range(dims):
                    value = block[i, d] - centre[d]
                    centred[i, d] = value
                    squares[i, d] = value * value
            np.dot(centred[:rows], linear, scores[:rows])
            np.dot(squares[:rows], quadratic, quadratic_part[:rows])
            for i in range(rows):
                for k in range(components):
                    scores[i, k] += quadratic_part[i, k] + offset[k]
            _add_posterior_sums(block, scores[:rows], centre, means, precisions, log_norms, cutoff,
                                zeroth[chunk], first[chunk], second[chunk])
    return zeroth.sum(axis=0), first.sum(axis=0), second.sum(axis=0)


@cache
def _blas() -> ThreadpoolController:
    """The process's BLAS libraries, found once (threadpoolctl scans the loaded libraries)."""
    return ThreadpoolController()


def default_threads() -> int:
    """Threads for one encoding: the cores this process may use, capped by its BLAS thread limit.

    joblib's worker processes (cross-validation folds) run with BLAS limited to their share of the
    cores; following that limit keeps parallel folds from oversubscribing the machine.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    blas_threads = [library["num_threads"] for library in _blas().select(user_api="blas").info()]
    return max(1, min([cores, *blas_threads]))


def fisher_vector(descriptors: np.ndarray, mixture: MixtureTables, threads: int | None = None) -> np.ndarray:
    """Improved Fisher vector (2 K D,) of descriptors (N, D); ``threads`` defaults to the usable cores."""
    x = np.ascontiguousarray(descriptors, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != mixture.means.shape[1] or len(x) == 0:
        raise ValueError(f"descriptors must be (N>0, {mixture.means.shape[1]}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("descriptors contain NaN or infinite values")
    chunks = max(1, min(threads or default_threads(), len(x) // ROWS_PER_THREAD))
    # the chunks run in parallel, each with one BLAS thread; the rest stays inside the limit too, as a
    # multi-threaded BLAS call in between leaves OpenBLAS threads spinning against the next chunks
    with _blas().limit(limits=1, user_api="blas"):
        zeroth, first, second = _posterior_sums(x, mixture.centre, mixture.linear, mixture.quadratic, mixture.offset,
                                                mixture.means, mixture.precisions, mixture.log_norms,
                                                POSTERIOR_CUTOFF + SCORE_MARGIN, chunks)
        centred_means, variances, weights = mixture.means - mixture.centre, mixture.variances, mixture.weights
        zeroth = zeroth[:, None] / len(x)
        first /= len(x)
        second /= len(x)
        u = (first - zeroth * centred_means) / (np.sqrt(weights)[:, None] * np.sqrt(variances))
        v = ((second - 2 * first * centred_means + zeroth * (centred_means ** 2 - variances))
             / (np.sqrt(2 * weights)[:, None] * variances))
        vector = np.concatenate([u.ravel(), v.ravel()])
        vector = np.sign(vector) * np.sqrt(np.abs(vector))
        norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def improved_fisher_vector(descriptors: np.ndarray, weights: np.ndarray, means: np.ndarray,
                           variances: np.ndarray) -> np.ndarray:
    """Improved Fisher vector (2 K D,) of descriptors (N, D) under a diagonal GMM (K components)."""
    return fisher_vector(descriptors, MixtureTables.from_gmm(weights, means, variances))


class FisherVectorEncoder(TransformerMixin, BaseEstimator):
    """Fit a diagonal GMM on training patients' descriptors; encode each patient as a Fisher vector.

    ``X`` is a sequence with one (n_i, D) descriptor array per patient, so the encoder can be the
    first step of a scikit-learn ``Pipeline`` and is refitted inside every training fold.
    ``descriptors_per_patient`` are drawn (seeded) from each patient for the GMM fit, so that
    every patient weighs the same whatever the tumour size.
    """

    def __init__(self, n_components: int = 64, descriptors_per_patient: int = 128, max_iter: int = 100,
                 random_state: int = 0) -> None:
        self.n_components = n_components
        self.descriptors_per_patient = descriptors_per_patient
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: Sequence[np.ndarray], y: object = None) -> FisherVectorEncoder:
        generator = np.random.default_rng(self.random_state)
        sample = np.concatenate([
            d if len(d) <= self.descriptors_per_patient else d[generator.choice(len(d), self.descriptors_per_patient, replace=False)]
            for d in X
        ]).astype(np.float64)
        mixture = GaussianMixture(self.n_components, covariance_type="diag", max_iter=self.max_iter,
                                  init_params="k-means++", random_state=self.random_state, reg_covar=1e-4)
        with warnings.catch_warnings():
            # any fitted GMM is a valid codebook; EM stopping at max_iter is not an error here
            warnings.simplefilter("ignore", ConvergenceWarning)
            mixture.fit(sample)
        self.weights_, self.means_, self.variances_ = mixture.weights_, mixture.means_, mixture.covariances_
        self.n_features_out_ = 2 * self.means_.size
        return self

    def transform(self, X: Sequence[np.ndarray]) -> np.ndarray:
        check_is_fitted(self, "means_")
        mixture = MixtureTables.from_gmm(self.weights_, self.means_, self.variances_)
        threads = default_threads()
        return np.stack([fisher_vector(d, mixture, threads) for d in X])

    def feature_names(self, layer: str = "") -> list[str]:
        """``<layer> filter f, component k, mean|variance`` for each output column (the paper's naming)."""
        check_is_fitted(self, "means_")
        components, dims = self.means_.shape
        prefix = f"{layer} " if layer else ""
        return [f"{prefix}filter {d + 1}, component {k + 1}, {block}"
                for block in ("mean", "variance") for k in range(components) for d in range(dims)]
