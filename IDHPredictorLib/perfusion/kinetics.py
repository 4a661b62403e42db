"""DSC signal to tracer kinetics: bolus arrival, delta-R2*, Boxerman-Schmainda-Weisskoff leakage
correction and relative cerebral blood volume.

    delta-R2*(t) = -ln(S(t) / S0) / TE            S0 = mean pre-bolus signal
    BSW (AJNR 2006): delta-R2*(t) ~ K1 ref(t) - K2 int_0^t ref,   ref = mean non-enhancing brain curve
    corrected(t) = delta-R2*(t) + K2 int_0^t ref;   CBV ~ int corrected dt  (the scale cancels in rCBV)
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

MIN_BASELINE_FRAMES = 3


def bolus_arrival(curve: np.ndarray, source: object = None) -> int:
    """Index of the first bolus frame of a (brain-mean) signal curve.

    Frame 0 is skipped (it may still carry T1 steady-state effects). Working forward, the first
    frame that falls below the running baseline mean by more than 3 baseline SDs (at least 2 %)
    and stays below it for the next frame is the arrival.
    """
    curve = np.asarray(curve, dtype=np.float64)
    for index in range(1 + MIN_BASELINE_FRAMES, len(curve) - 1):
        baseline = curve[1:index]
        threshold = baseline.mean() - max(3 * baseline.std(), 0.02 * baseline.mean())
        if curve[index] < threshold and curve[index + 1] < threshold:
            return index
    raise InputError(source, "no contrast bolus found in the DSC series (no signal drop after a baseline)",
                     f"Check that the series covers the bolus with at least {MIN_BASELINE_FRAMES} pre-contrast frames")


# The bolus minimum of the brain-mean curve lies at 22-30 % of the phantom's series and at 36-41 %
# of the real DSC curves in ../shared/realdata (artery, white matter); reversed phantom series put
# it at 68-76 %.
LATEST_BOLUS_FRACTION = 0.6


def check_bolus_position(curve: np.ndarray, source: object = None) -> None:
    """Refuse a series whose bolus (the brain-mean signal minimum) comes in its last 40 %: frames in
    reverse order, or an acquisition that started after the bolus; both give wrong perfusion."""
    curve = np.asarray(curve, dtype=np.float64)
    position = int(np.argmin(curve)) / len(curve)
    if position > LATEST_BOLUS_FRACTION:
        raise InputError(source, f"the bolus (lowest brain signal) comes at {100 * position:.0f} % of the series, "
                         f"after {100 * LATEST_BOLUS_FRACTION:.0f} %: the frames look reversed, or the baseline is missing",
                         "Export the frames in acquisition order (first frame = pre-contrast baseline)")


def delta_r2(signal: np.ndarray, arrival: int, echo_time_s: float) -> np.ndarray:
    """delta-R2* (1/s) of signal curves (..., t) against their mean over frames 1..arrival-1."""
    signal = np.asarray(signal, dtype=np.float64)
    baseline = signal[..., 1:arrival].mean(axis=-1, keepdims=True)
    ratio = np.clip(signal, 1e-3, None) / np.clip(baseline, 1e-3, None)
    return -np.log(ratio) / echo_time_s


def dual_echo_delta_r2(short_echo: np.ndarray, long_echo: np.ndarray, short_te_s: float, long_te_s: float,
                       arrival: int) -> np.ndarray:
    """T1-free delta-R2* (1/s) from two echoes: ln(S_short / S_long) / (TE_long - TE_short), minus
    its mean over frames 1..arrival-1. T1 effects scale both echoes alike and cancel in the ratio."""
    short_echo, long_echo = (np.clip(np.asarray(s, dtype=np.float64), 1e-3, None) for s in (short_echo, long_echo))
    r2 = np.log(short_echo / long_echo) / (long_te_s - short_te_s)
    return r2 - r2[..., 1:arrival].mean(axis=-1, keepdims=True)


def leakage_correction(curves: np.ndarray, reference: np.ndarray, dt: float,
                       arrival: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BSW correction of delta-R2* curves (n, t) with the reference curve (t,).

    Returns the corrected curves, K1 and K2 (1/s) per curve, fitted by least squares from the
    bolus arrival on (pre-bolus frames carry no kinetics).
    """
    curves = np.atleast_2d(curves)
    integral = np.cumsum(reference) * dt
    design = np.stack([reference[arrival:], -integral[arrival:]], axis=1)  # (t', 2)
    coefficients, *_ = np.linalg.lstsq(design, curves[:, arrival:].T, rcond=None)  # (2, n)
    k1, k2 = coefficients
    return curves + k2[:, None] * integral[None, :], k1, k2


def blood_volume(curves: np.ndarray, dt: float, arrival: int) -> np.ndarray:
    """Relative CBV (arbitrary units): area under delta-R2* from the bolus arrival to the end."""
    return np.sum(np.atleast_2d(curves)[:, arrival:], axis=1) * dt
