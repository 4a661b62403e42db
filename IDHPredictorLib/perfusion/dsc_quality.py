"""Quality control of a DSC analysis, read from its mean curves: the signatures that make a
single-echo rCBV unreliable (T1-dominant leakage, a leakage fit that does not hold, an implausible
rCBV), a short baseline, a bolus cut off, an arterial input that does not look arterial. Each is a
verdict that travels with the rCBV and the LSTM prediction made from the same series.

The same functions run on region-of-interest curves (``roi_rcbv``), which is how the real dual-echo
curves in ../shared/realdata/dsc-roi-curves are checked against their T1-free reference
(``kinetics.dual_echo_delta_r2``).
"""

from __future__ import annotations

import numpy as np

from ..quality import QualityReport
from .kinetics import blood_volume, delta_r2, leakage_correction

# Fewer pre-bolus frames than this make each voxel's S0, and so every delta-R2* of that voxel,
# noisy: S0's error shrinks only with the square root of the frame count and is integrated over the
# whole curve. (``kinetics.MIN_BASELINE_FRAMES`` refuses a series outright; the phantom has 7-14.)
RECOMMENDED_BASELINE_FRAMES = 6
# A tumour signal rising this far above its own baseline after the bolus is T1 shortening by
# leaked contrast outweighing the T2* drop: the single-echo correction then extrapolates.
T1_OVERSHOOT = 0.05
MIN_LEAKAGE_FIT_R2 = 0.8
# Solid-tumour rCBV outside this range is not a blood volume any glioma shows.
PLAUSIBLE_RCBV = (0.3, 20.0)
# The bolus must have passed: the white-matter signal recovers at least this share of its drop.
MIN_RECOVERY = 0.5
# An artery's first-pass delta-R2* peak is several times white matter's (partial volume included).
MIN_ARTERY_TO_WHITE_MATTER_PEAK = 3.0


def leakage_fit_r2(tumour_dr2: np.ndarray, reference_dr2: np.ndarray, dt: float, arrival: int) -> float:
    """Share of the tumour's delta-R2* variance (from the bolus on) that the BSW model explains."""
    _, k1, k2 = leakage_correction(tumour_dr2[None], reference_dr2, dt, arrival)
    fitted = k1[0] * reference_dr2 - k2[0] * np.cumsum(reference_dr2) * dt
    observed = tumour_dr2[arrival:]
    residual = np.sum((observed - fitted[arrival:]) ** 2)
    total = np.sum((observed - observed.mean()) ** 2)
    return float(1.0 - residual / total) if total > 0 else 0.0


def roi_rcbv(tumour_dr2: np.ndarray, reference_dr2: np.ndarray, dt: float, arrival: int) -> dict[str, float]:
    """rCBV of a tumour delta-R2* curve relative to a white-matter one, before and after BSW leakage
    correction (the white-matter curve is both the leakage reference and the normaliser)."""
    corrected, _, k2 = leakage_correction(tumour_dr2[None], reference_dr2, dt, arrival)
    reference_cbv = float(blood_volume(reference_dr2, dt, arrival)[0])
    return {"rcbv_uncorrected": float(blood_volume(tumour_dr2, dt, arrival)[0]) / reference_cbv,
            "rcbv": float(blood_volume(corrected, dt, arrival)[0]) / reference_cbv, "k2": float(k2[0]),
            "leakage_fit_r2": leakage_fit_r2(tumour_dr2, reference_dr2, dt, arrival)}


def single_echo_roi_rcbv(tumour_signal: np.ndarray, reference_signal: np.ndarray, echo_time_s: float, dt: float,
                         arrival: int) -> dict[str, float]:
    """``roi_rcbv`` from single-echo signal curves, as ``analyse_dsc`` computes it per voxel."""
    return roi_rcbv(delta_r2(tumour_signal, arrival, echo_time_s), delta_r2(reference_signal, arrival, echo_time_s),
                    dt, arrival)


def dsc_curve_quality(tumour_signal: np.ndarray, reference_signal: np.ndarray, arterial_dr2: np.ndarray | None,
                      reference_dr2: np.ndarray, arrival: int, rcbv: float, fit_r2: float,
                      dual_echo: bool = False) -> QualityReport:
    """Verdicts on one DSC analysis from its mean curves: tumour and white-matter signal (the long
    echo's), the AIF's and white matter's delta-R2*, the bolus arrival frame, the tumour's rCBV and
    its leakage-fit R^2. With ``dual_echo`` the delta-R2* is T1-free, so T1 leakage cannot bias it."""
    quality = QualityReport()
    tumour_signal, reference_signal = np.asarray(tumour_signal, float), np.asarray(reference_signal, float)
    baseline_frames = arrival - 1
    quality.add("dsc_baseline", "warn" if baseline_frames < RECOMMENDED_BASELINE_FRAMES else "pass",
                f"{baseline_frames} pre-bolus frames" + (f" (fewer than {RECOMMENDED_BASELINE_FRAMES}: the baseline "
                                                         "signal, and every delta-R2*, is noisy)"
                                                         if baseline_frames < RECOMMENDED_BASELINE_FRAMES else ""),
                baseline_frames)

    reference_baseline = reference_signal[1:arrival].mean()
    lowest = int(np.argmin(reference_signal))
    drop = reference_baseline - reference_signal[lowest]
    recovery = float((reference_signal[-3:].mean() - reference_signal[lowest]) / drop) if drop > 0 else 0.0
    quality.add("dsc_bolus_coverage", "warn" if recovery < MIN_RECOVERY else "pass",
                f"white-matter signal recovers {recovery:.0%} of its bolus drop by the last frame"
                + (": the series ends during the bolus, so blood volumes are cut short" if recovery < MIN_RECOVERY else ""),
                round(recovery, 3))

    tumour_baseline = tumour_signal[1:arrival].mean()
    after = tumour_signal[int(np.argmin(tumour_signal)):]
    overshoot = float(after.max() / tumour_baseline - 1.0) if tumour_baseline > 0 else 0.0
    t1_dominant = overshoot > T1_OVERSHOOT and not dual_echo
    quality.add("dsc_t1_leakage", "warn" if t1_dominant else "pass",
                f"the tumour signal rises {overshoot:.0%} above its baseline after the bolus"
                + (": T1-dominant contrast leakage; a single-echo rCBV is unreliable even after correction "
                   "(a dual-echo series or a preload dose avoids it)" if t1_dominant else "")
                + ("; dual-echo delta-R2*: T1 effects cancel" if dual_echo else ""), round(overshoot, 4))

    quality.add("dsc_leakage_fit", "warn" if fit_r2 < MIN_LEAKAGE_FIT_R2 else "pass",
                f"the leakage model explains {fit_r2:.0%} of the tumour's delta-R2* (R^2)"
                + (f", below {MIN_LEAKAGE_FIT_R2:.0%}: the corrected rCBV is an extrapolation" if fit_r2 < MIN_LEAKAGE_FIT_R2 else ""),
                round(fit_r2, 3))

    low, high = PLAUSIBLE_RCBV
    plausible = low <= rcbv <= high
    quality.add("dsc_rcbv", "pass" if plausible else "warn",
                f"tumour rCBV {rcbv:.2f}" + ("" if plausible else f", outside {low}-{high}: not a blood volume a glioma shows; "
                                                                  "read the rCBV and the perfusion prediction with caution"),
                round(rcbv, 3))

    if arterial_dr2 is not None:
        white_peak = float(np.max(reference_dr2))
        ratio = float(np.max(arterial_dr2)) / white_peak if white_peak > 0 else float("inf")
        arterial = ratio >= MIN_ARTERY_TO_WHITE_MATTER_PEAK
        quality.add("dsc_aif", "pass" if arterial else "warn",
                    f"arterial input peak {ratio:.1f} x white matter's" + ("" if arterial else
                                                                          f" (below {MIN_ARTERY_TO_WHITE_MATTER_PEAK:.0f} x: "
                                                                          "the AIF voxels do not look arterial; pick them by hand)"),
                    round(ratio, 2))
    return quality
