"""Arterial input function: automatic selection after Mouridsen et al. (MRM 2006), or by hand.

Automatic: among brain voxels outside the tumour, keep the 2 % with the largest area under the
delta-R2* curve, drop the 25 % most irregular of those (pre-bolus noise relative to the peak;
Mouridsen's second-difference roughness would drop the sharpest boluses, i.e. the arteries), then k-means (5 clusters) on the area-normalised curves and keep
the cluster whose mean curve has the earliest, highest, narrowest bolus (``bolus_score``);
cluster that cluster again (as Mouridsen did) until at most ``max_voxels`` remain. The chosen voxels are returned so that
a viewer can show them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

from ..errors import InputError


@dataclass
class ArterialInput:
    """The AIF: its delta-R2* curve and the (z, y, x) DSC voxels it averages."""

    curve: np.ndarray
    voxels: np.ndarray
    method: str


def bolus_score(curves: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Peak height / (time to peak x full width at half maximum) of each curve (n, t): large for
    the early, high, narrow first pass of an artery."""
    peak_index = curves.argmax(axis=1)
    peak = curves.max(axis=1)
    above = curves >= peak[:, None] / 2
    width = np.maximum(above.sum(axis=1), 1) * float(np.mean(np.diff(times)))
    time_to_peak = times[peak_index] - times[0] + float(np.mean(np.diff(times)))
    return peak / (time_to_peak * width)


def _best_cluster(curves: np.ndarray, times: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """Indices of the k-means cluster (on area-normalised curves) holding the best bolus: a few
    arterial voxels among hundreds would be outvoted by a cluster mean."""
    area = curves.sum(axis=1, keepdims=True)
    shapes = curves / np.where(area > 0, area, 1.0)
    clusters = min(clusters, len(curves))
    labels = KMeans(clusters, n_init=4, random_state=seed).fit_predict(shapes)
    voxel_scores = bolus_score(curves, times)
    scores = [voxel_scores[labels == k].max() if np.any(labels == k) else -1.0 for k in range(clusters)]
    return np.flatnonzero(labels == int(np.argmax(scores)))


def automatic_aif(delta_r2: np.ndarray, candidates: np.ndarray, times: np.ndarray, arrival: int,
                  clusters: int = 5, max_voxels: int = 10, seed: int = 0) -> ArterialInput:
    """Select AIF voxels among ``candidates`` (boolean (z, y, x)) of delta-R2* (t, z, y, x)."""
    voxels = np.argwhere(candidates)
    if len(voxels) < clusters * 4:
        raise InputError(None, "too few brain voxels to search for an arterial input function",
                         "Check the brain mask of the DSC series, or give the AIF voxels by hand")
    all_curves = delta_r2[:, candidates].T  # (n, t)
    curves = np.clip(all_curves[:, arrival - 1:], 0.0, None)  # from just before the bolus
    t = times[arrival - 1:]
    area = curves.sum(axis=1)
    keep = area >= np.percentile(area, 98)
    curves, voxels = curves[keep], voxels[keep]
    # irregularity as baseline noise relative to the peak: a sharp arterial bolus is not noise.
    # The last two pre-bolus frames are left out: arteries fill before the brain-mean arrival.
    noise = all_curves[keep, 1:max(arrival - 2, 3)].std(axis=1) / np.maximum(curves.max(axis=1), 1e-9)
    keep = noise <= np.percentile(noise, 75)
    curves, voxels = curves[keep], voxels[keep]
    chosen = np.arange(len(curves))
    while len(chosen) > max_voxels:  # cluster, then cluster the chosen cluster again, ...
        chosen = chosen[_best_cluster(curves[chosen], t, clusters, seed)]
    selected = voxels[chosen]
    return ArterialInput(delta_r2[:, selected[:, 0], selected[:, 1], selected[:, 2]].mean(axis=1), selected, "automatic")


def manual_aif(delta_r2: np.ndarray, voxels: np.ndarray | list[tuple[int, int, int]]) -> ArterialInput:
    """AIF from voxels the user chose: (z, y, x) indices, e.g. from a voxel mask or points."""
    voxels = np.atleast_2d(np.asarray(voxels, dtype=int))
    shape = delta_r2.shape[1:]
    if voxels.size == 0 or np.any(voxels < 0) or np.any(voxels >= np.asarray(shape)):
        raise InputError(None, f"AIF voxels {voxels.tolist()} are empty or outside the DSC grid {shape}",
                         "Place the AIF points inside the DSC series' field of view")
    return ArterialInput(delta_r2[:, voxels[:, 0], voxels[:, 1], voxels[:, 2]].mean(axis=1), voxels, "manual")
