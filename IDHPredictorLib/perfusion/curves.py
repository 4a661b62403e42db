"""The attention-LSTM's input (Choi et al. 2019): mean T2*-weighted signal-time curves of the
enhancing tumour, non-enhancing tumour, oedema and whole tumour, plus the AIF: 5 channels.

Series differ in frame count, TR and bolus timing, so every curve is first resampled (linear
interpolation in time) onto one grid: ``GRID_FRAMES`` samples every ``GRID_STEP_S`` seconds,
starting ``PRE_BOLUS_S`` before the bolus arrival; a series that ends early is extended with its
last value. Each channel is then z-normalised over its own samples. A subregion missing from a
patient (often no enhancing tumour in IDH-mutant gliomas) gives an all-zero channel, which after
z-normalisation means "no deviation from the mean", and is reported in ``present``.
The 8 samples per patient are sliding windows of ``WINDOW_FRAMES`` over the grid, step 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .analysis import PerfusionAnalysis

CHANNELS = ("enhancing", "nonenhancing", "oedema", "whole", "aif")
WHOLE_CHANNEL = CHANNELS.index("whole")  # the curve the temporal segments are read from
GRID_STEP_S = 1.5
PRE_BOLUS_S = 12.0
GRID_FRAMES = 48
WINDOWS = 8
WINDOW_FRAMES = GRID_FRAMES - WINDOWS + 1


@dataclass
class PatientCurves:
    """(5, GRID_FRAMES) z-normalised curves on the common time grid; which channels exist."""

    curves: np.ndarray
    present: tuple[bool, ...]
    grid_s: np.ndarray  # time of each grid sample relative to the bolus arrival


def resample_to_grid(curve: np.ndarray, times_s: np.ndarray, arrival_s: float) -> np.ndarray:
    """A signal curve on the common grid (aligned on the bolus arrival, edge values beyond the series)."""
    grid = arrival_s - PRE_BOLUS_S + GRID_STEP_S * np.arange(GRID_FRAMES)
    return np.interp(grid, times_s, curve, left=curve[0], right=curve[-1])


def znormalise(curve: np.ndarray) -> np.ndarray:
    """Zero mean, unit SD (a flat curve becomes zeros)."""
    sd = curve.std()
    return (curve - curve.mean()) / sd if sd > 0 else np.zeros_like(curve)


def patient_curves(analysis: PerfusionAnalysis) -> PatientCurves:
    """The five channels of one analysed DSC series."""
    arrival_s = float(analysis.times_s[analysis.arrival])
    channels, present = [], []
    for name in CHANNELS:
        if name == "aif":
            voxels = analysis.aif.voxels
            raw = analysis.signal[:, voxels[:, 0], voxels[:, 1], voxels[:, 2]].mean(axis=1)
        else:
            mask = analysis.regions.subregions[name]
            raw = analysis.signal[:, mask].mean(axis=1) if mask.any() else None
        present.append(raw is not None)
        channels.append(np.zeros(GRID_FRAMES) if raw is None else
                        znormalise(resample_to_grid(raw.astype(np.float64), analysis.times_s, arrival_s)))
    grid = -PRE_BOLUS_S + GRID_STEP_S * np.arange(GRID_FRAMES)
    return PatientCurves(np.stack(channels).astype(np.float32), tuple(present), grid)


def sliding_windows(curves: np.ndarray) -> np.ndarray:
    """(WINDOWS, channels, WINDOW_FRAMES) windows of a (channels, GRID_FRAMES) array, step 1."""
    return np.stack([curves[:, start:start + WINDOW_FRAMES] for start in range(WINDOWS)])
