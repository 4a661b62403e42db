"""Improved Fisher vector encoding (Perronnin et al. 2010) of a patient's deep descriptors.

Layout as VLFeat's ``vl_fisher``: the first-order block u (K x D, component-major) then the
second-order block v (K x D), no mixture-weight terms; signed square root, then L2 norm.

    u_k = 1 / (N sqrt(w_k))   * sum_i g_ik (x_i - mu_k) / sigma_k
    v_k = 1 / (N sqrt(2 w_k)) * sum_i g_ik [((x_i - mu_k) / sigma_k)^2 - 1]

Written here rather than calling ``skimage.feature.fisher_vector``: that function adds K weight
terms, flips the sign of the variance block, needs a fitted ``GaussianMixture`` object (a saved
DLR bundle holds plain arrays) and computes all N x K posteriors and statistics in float64 with
four dense matrix products. Deep descriptors in 128 dimensions are almost always owned by one
component, so this encoder scores exactly only the components that can matter:

1. bounds: the Gaussian exponent of every component summed over the first half of the dimensions
   (the other half's terms are non-positive, so this is an upper bound on each log-density), one
   float32 matrix product of x - centre and its square; its worst-case float32 rounding error
   (Cauchy-Schwarz on the terms) is added, so the bounds hold whatever the data;
2. per descriptor, the component with the highest bound is scored exactly in float64; only the
   components whose bound comes within ``POSTERIOR_CUTOFF`` nats of that score can have a
   posterior above e^-32 of the best, and only they are scored too (3.4 to 4.7 of 64 per descriptor,
   on average, for conv6 descriptors of six phantom cases);
3. the zeroth-, first- and second-order sums over those (descriptor, component) pairs, around
   the mixture mean, in float64; a descriptor left with one component has posterior exactly 1.

All of it is compiled (numba): per-descriptor branching over a varying number of components has
no efficient NumPy form, and NumPy's multi-megabyte temporaries cost more in page faults than the
products themselves. Descriptors go in blocks whose buffers stay in the core's cache; passes over
a whole block (best bound, which components to score) run across descriptors, vectorised. Rows
are split into chunks on numba's threads, each calling BLAS single-threaded. Posteriors below
e^-32 ~ 1e-14 of a descriptor's best component are zero (VLFeat drops those below 1e-6). On
conv6 descriptors of the phantom the result equals skimage's float64 one to ~1e-13, about 12x
faster on two cores (``Testing/Benchmarks/bench_dlr.py``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros  # the CPU's count of trailing zero bits (tzcnt)
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

POSTERIOR_CUTOFF = 32.0  # nats below a descriptor's best component: posterior taken as 0 (e^-32 = 1.3e-14)
BOUND_FRACTION = 0.5  # share of the dimensions summed in the float32 bounds; the others are scored only where needed
ROWS_PER_THREAD = 2048  # fewer rows than this per chunk cost more in thread hand-off than they save
BLOCK_ROWS = 512  # descriptors bounded at a time, into reused buffers that stay in the core's cache: fresh
#                   multi-megabyte temporaries per call cost more in page faults than the matrix products
FLOAT32_UNIT = 2.0 ** -24  # unit roundoff of float32
EXPONENT_BITS = np.uint32(0x7F800000)  # a float32 whose exponent bits are all set is infinite or NaN


@dataclass(frozen=True)
class MixtureTables:
    """A diagonal GMM in the forms the encoder needs; built once per GMM, reused for every patient.

    The bound tables give, for a descriptor x, an upper bound on every log w_k N(x; mu_k, var_k): the
    Gaussian exponent summed over the first ``bound_dimensions`` dimensions only (dropping the other
    dimensions' non-positive terms), as one float32 matrix product of x - centre and its square on
    those dimensions. Any dimensions give valid bounds; on phantom conv6 descriptors choosing them by
    their expected share of the exponent left as many components to score (3.96 against 3.97 per
    descriptor over six cases) and cost a gather, so the first ones are used.
    """

    means: np.ndarray  # (K, D) float64
    variances: np.ndarray  # (K, D) float64
    precisions: np.ndarray  # (K, D) float64, 1 / variances
    log_norms: np.ndarray  # (K,) log w_k - 0.5 sum_d log(2 pi var_kd)
    centre: np.ndarray  # (D,) mixture mean, subtracted before the float32 bounds and the moments
    centred_means: np.ndarray  # (K, D) means - centre
    first_scale: np.ndarray  # (K, D) 1 / (sqrt(w_k) sigma_kd), the first-order block's normaliser
    second_scale: np.ndarray  # (K, D) 1 / (sqrt(2 w_k) var_kd), the second-order block's
    bound_weights: np.ndarray  # (K, 2 S) float32: (mu - centre) / var on the first S dimensions, then -1 / (2 var)
    bound_offset: np.ndarray  # (K,) float32, the bounds' constant
    bound_norms: np.ndarray  # (K, 3) float64: L2 norms of each row's two halves of bound_weights, |bound_offset|

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
        subset = max(1, round(BOUND_FRACTION * means.shape[1]))
        linear, quadratic = (centred * precisions)[:, :subset], (-0.5 * precisions)[:, :subset]
        bound_weights = np.hstack([linear, quadratic]).astype(np.float32)
        bound_offset = (log_norms - 0.5 * np.sum((centred ** 2 * precisions)[:, :subset], axis=1)).astype(np.float32)
        bound_norms = np.stack([np.linalg.norm(bound_weights[:, :subset].astype(np.float64), axis=1),
                                np.linalg.norm(bound_weights[:, subset:].astype(np.float64), axis=1),
                                np.abs(bound_offset.astype(np.float64))], axis=1)
        return cls(means, variances, precisions, log_norms, centre, centred,
                   1.0 / (np.sqrt(weights)[:, None] * np.sqrt(variances)), 1.0 / (np.sqrt(2 * weights)[:, None] * variances),
                   bound_weights, bound_offset, bound_norms)

    @property
    def bound_dimensions(self) -> int:
        """S, the number of (first) dimensions summed in the bounds."""
        return self.bound_weights.shape[1] // 2


@numba.njit(cache=True)
def bound_rounding_factor(subset: int) -> float:
    """Largest float32 rounding error of a bound over ``subset`` dimensions, per unit of its summed |terms|.

    A float32 dot product of n terms is off by at most n u sum|terms| (u = 2^-24, any summation
    order): n = 2 S products, plus the roundings of the inputs, the weights, the offset, the final
    addition and of this bound's own evaluation.
    """
    return (2 * subset + 10) * FLOAT32_UNIT


@numba.njit(cache=True, fastmath={"reassoc", "contract"}, inline="always")
def _log_density(x: np.ndarray, k: int, means: np.ndarray, precisions: np.ndarray, log_norms: np.ndarray) -> float:
    """log w_k N(x; mu_k, var_k) in float64."""
    distance = 0.0
    for d in range(x.shape[0]):
        difference = x[d] - means[k, d]
        distance += difference * difference * precisions[k, d]
    return log_norms[k] - 0.5 * distance


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _bound_inputs(block: np.ndarray, centre: np.ndarray, inputs: np.ndarray, input_norms: np.ndarray) -> bool:
    """Fill ``inputs`` (rows, 2 S) with x - centre and its square on the first S dimensions, in float32,
    and ``input_norms`` (2, rows) with the two halves' L2 norms; False if any value of ``block`` is
    infinite or NaN.
    """
    rows, dims = block.shape
    subset = inputs.shape[1] // 2
    bits = block.view(np.uint32)
    non_finite = 0
    for i in range(rows):
        for d in range(dims):
            non_finite |= (bits[i, d] & EXPONENT_BITS) == EXPONENT_BITS
        linear_norm = 0.0
        quadratic_norm = 0.0
        for j in range(subset):
            value = np.float32(block[i, j] - centre[j])
            square = value * value
            inputs[i, j] = value
            inputs[i, subset + j] = square
            linear_norm += square
            quadratic_norm += square * square
        input_norms[0, i] = np.sqrt(linear_norm)
        input_norms[1, i] = np.sqrt(quadratic_norm)
    return non_finite == 0


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _add_sums(x: np.ndarray, q: float, centre: np.ndarray, first_k: np.ndarray, second_k: np.ndarray) -> None:
    """first_k += q (x - centre), second_k += q (x - centre)^2."""
    for d in range(x.shape[0]):
        value = x[d] - centre[d]
        first_k[d] += q * value
        second_k[d] += q * value * value


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _add_block_sums(block: np.ndarray, bounds: np.ndarray, input_norms: np.ndarray, bound_norms: np.ndarray,
                    error_factor: float, centre: np.ndarray, means: np.ndarray, precisions: np.ndarray,
                    log_norms: np.ndarray, cutoff: float, zeroth: np.ndarray, first: np.ndarray,
                    second: np.ndarray) -> int:
    """Add q_ik, q_ik c_i and q_ik c_i^2 (c = x - centre) over a block's descriptors i to ``zeroth`` (K,), ``first``, ``second`` (K, D);
    return how many descriptors no bound held for (none unless float32 overflowed: their sums are missing).

    q_ik is the exact posterior over the components whose log-density is within ``cutoff`` of the
    best one, 0 for the others. ``bounds`` (K, rows) exceed each log-density, up to their float32
    rounding: at most ``error_factor`` times the sum of the absolute terms, which Cauchy-Schwarz
    bounds by ``input_norms`` times ``bound_norms``. Per descriptor the component with the highest
    bound is scored exactly, then only the components whose bound comes within ``cutoff`` of that
    score (passes over all rows at once, vectorised, mark them: a bit per component).
    """
    rows, dims = block.shape
    components = means.shape[0]
    words = (components + 63) // 64
    tops = bounds[0].copy()
    guesses = np.zeros(rows, np.int64)
    for k in range(1, components):
        for i in range(rows):
            better = bounds[k, i] > tops[i]
            tops[i] = bounds[k, i] if better else tops[i]
            guesses[i] = k if better else guesses[i]
    guess_scores = np.empty(rows)
    for i in range(rows):
        guess_scores[i] = _log_density(block[i], guesses[i], means, precisions, log_norms)
    counts = np.zeros(rows, np.int64)
    masks = np.zeros((rows, words), np.uint64)
    for k in range(components):
        word = k >> 6
        bit = np.uint64(1) << np.uint64(k & 63)
        linear_norm, quadratic_norm, offset_norm = bound_norms[k, 0], bound_norms[k, 1], bound_norms[k, 2]
        for i in range(rows):
            error = error_factor * (input_norms[0, i] * linear_norm + input_norms[1, i] * quadratic_norm + offset_norm)
            hit = bounds[k, i] + error >= guess_scores[i] - cutoff
            counts[i] += hit
            masks[i, word] |= bit if hit else np.uint64(0)
    owners = np.where(counts == 1, guesses, -1)  # the component with posterior 1, or -1 if shared
    candidates = np.empty(components, np.int64)
    posteriors = np.empty(components)
    for i in range(rows):
        if counts[i] < 2:
            continue
        found = 0
        top = guess_scores[i]  # the guess is always among the marked: its bound is at least its score
        for word in range(words):
            mask = masks[i, word]
            while mask:
                k = word * 64 + trailing_zeros(mask)
                mask &= mask - np.uint64(1)
                posteriors[found] = guess_scores[i] if k == guesses[i] else _log_density(block[i], k, means, precisions, log_norms)
                candidates[found] = k
                top = max(top, posteriors[found])
                found += 1
        kept = 0
        total = 0.0
        for a in range(found):
            if posteriors[a] >= top - cutoff:
                candidates[kept] = candidates[a]
                posteriors[kept] = np.exp(posteriors[a] - top)
                total += posteriors[kept]
                kept += 1
        if kept == 1:
            owners[i] = candidates[0]
            continue
        for a in range(kept):
            q = posteriors[a] / total
            zeroth[candidates[a]] += q
            _add_sums(block[i], q, centre, first[candidates[a]], second[candidates[a]])
    # descriptors with one owner are summed per component, so that each component's sums stay in the
    # core's fastest cache while its descriptors are added (a counting sort by owner)
    starts = np.zeros(components + 1, np.int64)
    for i in range(rows):
        if owners[i] >= 0:
            starts[owners[i] + 1] += 1
    starts = np.cumsum(starts)
    order = np.empty(starts[components], np.int64)
    filled = starts[:components].copy()
    for i in range(rows):
        if owners[i] >= 0:
            order[filled[owners[i]]] = i
            filled[owners[i]] += 1
    first_sum = np.empty(dims)
    second_sum = np.empty(dims)
    for k in range(components):
        if starts[k + 1] == starts[k]:
            continue
        first_sum[:] = 0.0
        second_sum[:] = 0.0
        for a in range(starts[k], starts[k + 1]):
            _add_sums(block[order[a]], 1.0, centre, first_sum, second_sum)
        zeroth[k] += starts[k + 1] - starts[k]
        first[k] += first_sum
        second[k] += second_sum
    return np.sum(counts == 0)  # rows where even the guess's own bound fell below its score


@numba.njit(parallel=True, cache=True)
def _posterior_sums(descriptors: np.ndarray, centre: np.ndarray, bound_weights: np.ndarray,
                    bound_offset: np.ndarray, bound_norms: np.ndarray, means: np.ndarray, precisions: np.ndarray,
                    log_norms: np.ndarray, cutoff: float, chunks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Sums of q_ik, q_ik c_i and q_ik c_i^2 (c = x - centre) per component k (float64), in ``chunks``
    parallel row ranges; then the counts of descriptors with a NaN or infinite value and of descriptors
    no bound held for (float32 overflow), either of which stops the encoding.

    Each chunk bounds BLOCK_ROWS descriptors at a time (one float32 product, into buffers it
    reuses), then adds their posterior sums.
    """
    count, dims = descriptors.shape
    components = means.shape[0]
    subset = bound_weights.shape[1] // 2
    error_factor = bound_rounding_factor(subset)
    zeroth = np.zeros((chunks, components))
    first = np.zeros((chunks, components, dims))
    second = np.zeros((chunks, components, dims))
    problems = np.zeros((chunks, 2), np.int64)  # non-finite, unbounded
    step = (count + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        inputs = np.empty((BLOCK_ROWS, 2 * subset), np.float32)
        bound_buffer = np.empty(components * BLOCK_ROWS, np.float32)
        input_norms = np.empty((2, BLOCK_ROWS))
        stop = min(count, (chunk + 1) * step)
        for start in range(chunk * step, stop, BLOCK_ROWS):
            rows = min(BLOCK_ROWS, stop - start)
            block = descriptors[start:start + rows]
            if not _bound_inputs(block, centre, inputs[:rows], input_norms):
                problems[chunk, 0] += 1
                break
            bounds = bound_buffer[:components * rows].reshape(components, rows)
            np.dot(bound_weights, inputs[:rows].T, bounds)
            for k in range(components):
                bounds[k] += bound_offset[k]
            problems[chunk, 1] += _add_block_sums(block, bounds, input_norms, bound_norms, error_factor, centre, means,
                                                  precisions, log_norms, cutoff, zeroth[chunk], first[chunk], second[chunk])
    return zeroth.sum(axis=0), first.sum(axis=0), second.sum(axis=0), problems[:, 0].sum(), problems[:, 1].sum()


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _improved_vector(zeroth: np.ndarray, first: np.ndarray, second: np.ndarray, count: int,
                     centred_means: np.ndarray, variances: np.ndarray, first_scale: np.ndarray,
                     second_scale: np.ndarray) -> np.ndarray:
    """VLFeat's improved Fisher vector (2 K D,) from the posterior sums around the mixture mean.

    One compiled pass: the same arithmetic in NumPy makes some twenty (K, D) temporaries (~0.5 ms).
    """
    components, dims = first.shape
    vector = np.empty((2, components, dims))
    inverse = 1.0 / count
    for k in range(components):
        occupancy = zeroth[k] * inverse
        for d in range(dims):
            mean = centred_means[k, d]
            moment1, moment2 = first[k, d] * inverse, second[k, d] * inverse
            u = (moment1 - occupancy * mean) * first_scale[k, d]
            v = (moment2 - 2.0 * moment1 * mean + occupancy * (mean * mean - variances[k, d])) * second_scale[k, d]
            vector[0, k, d] = math.copysign(math.sqrt(abs(u)), u)
            vector[1, k, d] = math.copysign(math.sqrt(abs(v)), v)
    flat = vector.ravel()
    squares = 0.0
    for value in flat:
        squares += value * value
    return flat / math.sqrt(squares) if squares > 0 else flat


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
    """Improved Fisher vector (2 K D,) of descriptors (N, D), taken in float32 as the CNN gives them;
    ``threads`` defaults to the usable cores."""
    x = np.ascontiguousarray(descriptors, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != mixture.means.shape[1] or len(x) == 0:
        raise ValueError(f"descriptors must be (N>0, {mixture.means.shape[1]}), got {x.shape}")
    chunks = max(1, min(threads or default_threads(), len(x) // ROWS_PER_THREAD))
    # the chunks run in parallel, each calling BLAS with one thread: a multi-threaded BLAS inside
    # them would oversubscribe the cores and leave OpenBLAS threads spinning against the chunks
    with _blas().limit(limits=1, user_api="blas"):
        zeroth, first, second, non_finite, unbounded = _posterior_sums(
            x, mixture.centre, mixture.bound_weights, mixture.bound_offset, mixture.bound_norms,
            mixture.means, mixture.precisions, mixture.log_norms, POSTERIOR_CUTOFF, chunks)
    if non_finite:
        raise ValueError("descriptors contain NaN or infinite values")
    if unbounded:
        raise ValueError(f"{unbounded} descriptors overflow float32 in the encoder's bounds (|x - mixture mean| "
                         "too large for this GMM's precisions): rescale the descriptors")
    return _improved_vector(zeroth, first, second, len(x), mixture.centred_means, mixture.variances,
                            mixture.first_scale, mixture.second_scale)


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
