"""Improved Fisher vector encoding (Perronnin et al. 2010) of a patient's deep descriptors.

Layout as VLFeat's ``vl_fisher``: the first-order block u (K x D, component-major) then the
second-order block v (K x D), no mixture-weight terms; signed square root, then L2 norm.

    u_k = 1 / (N sqrt(w_k))   * sum_i g_ik (x_i - mu_k) / sigma_k
    v_k = 1 / (N sqrt(2 w_k)) * sum_i g_ik [((x_i - mu_k) / sigma_k)^2 - 1]

Written here rather than calling ``skimage.feature.fisher_vector`` because that function adds K
weight terms, flips the sign of the variance block and needs a fitted ``GaussianMixture`` object,
while a saved DLR bundle holds plain arrays. Same algorithm otherwise (four float64 matrix
products; posteriors below 1e-6 dropped as VLFeat does); the test checks it against skimage.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted

POSTERIOR_FLOOR = 1e-6


def improved_fisher_vector(descriptors: np.ndarray, weights: np.ndarray, means: np.ndarray,
                           variances: np.ndarray) -> np.ndarray:
    """Improved Fisher vector (2 K D,) of descriptors (N, D) under a diagonal GMM (K components)."""
    x = np.asarray(descriptors, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != means.shape[1] or len(x) == 0:
        raise ValueError(f"descriptors must be (N>0, {means.shape[1]}), got {x.shape}")
    precisions = 1.0 / variances
    squares = x * x
    # log w_k + log N(x | mu_k, var_k), expanded so that it is two matrix products
    constant = np.log(weights) - 0.5 * (np.sum(means ** 2 * precisions, axis=1) + np.sum(np.log(2 * np.pi * variances), axis=1))
    posteriors = x @ (means * precisions).T
    posteriors -= 0.5 * (squares @ precisions.T)
    posteriors += constant
    posteriors -= posteriors.max(axis=1, keepdims=True)
    np.exp(posteriors, out=posteriors)
    posteriors /= posteriors.sum(axis=1, keepdims=True)
    posteriors[posteriors < POSTERIOR_FLOOR] = 0.0
    zeroth = posteriors.sum(axis=0)[:, None] / len(x)
    first = posteriors.T @ x / len(x)
    second = posteriors.T @ squares / len(x)
    sigma = np.sqrt(variances)
    u = (first - zeroth * means) / (np.sqrt(weights)[:, None] * sigma)
    v = (second - 2 * first * means + zeroth * (means ** 2 - variances)) / (np.sqrt(2 * weights)[:, None] * variances)
    vector = np.concatenate([u.ravel(), v.ravel()])
    vector = np.sign(vector) * np.sqrt(np.abs(vector))
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


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
        return np.stack([improved_fisher_vector(d, self.weights_, self.means_, self.variances_) for d in X])

    def feature_names(self, layer: str = "") -> list[str]:
        """``<layer> filter f, component k, mean|variance`` for each output column (the paper's naming)."""
        check_is_fitted(self, "means_")
        components, dims = self.means_.shape
        prefix = f"{layer} " if layer else ""
        return [f"{prefix}filter {d + 1}, component {k + 1}, {block}"
                for block in ("mean", "variance") for k in range(components) for d in range(dims)]
