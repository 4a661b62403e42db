"""Measurement: single-echo leakage corrections against the T1-free dual-echo rCBV of the real
curves (../shared/realdata/dsc-roi-curves) and against the truth of simulated curves (the phantom's
kinetics, leakage K2 up to 0.04/s, tumour MTT 4 or 6 s, noise), side by side in one run. It chose
the shipped single-echo method (issue 19); the candidates that lost live here only.

    python Testing/Benchmarks/dsc_leakage_methods.py [--out results/dsc_leakage.json]

Candidates:
* BSW: Boxerman-Schmainda-Weisskoff (AJNR 2006), white matter as reference (shipped).
* BSW + arrival-time correction: the reference shifted in time by the delay that fits best (R^2),
  in the spirit of Leigh et al. 2012's arrival-time-corrected BSW.
* Residue tail: the tumour curve deconvolved by the reference (truncated SVD, 10 % threshold),
  the late residue (from 25 s) taken as the leakage term and subtracted, in the spirit of
  Bjornerud et al. (JCBFM 2011); 20 s and 35 s tail starts show its sensitivity.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np

from IDHPredictorLib.perfusion.dsc_quality import leakage_fit_r2, roi_rcbv
from IDHPredictorLib.perfusion.kinetics import blood_volume, bolus_arrival, delta_r2, dual_echo_delta_r2, leakage_correction
from IDHPredictorLib.phantom.dsc import arterial_concentration, tissue_delta_r2
from IDHPredictorLib.phantom.realism import real_dsc_curves

SIMULATED_RCBV = 3.0


def bsw(tumour: np.ndarray, reference: np.ndarray, dt_s: float, arrival: int) -> float:
    return roi_rcbv(tumour, reference, dt_s, arrival)["rcbv"]


def bsw_arrival_corrected(tumour: np.ndarray, reference: np.ndarray, dt_s: float, arrival: int) -> float:
    times = np.arange(len(reference)) * dt_s
    shifts = np.arange(-4.0, 4.01, 0.5)
    shifted = [np.interp(times - shift, times, reference, left=0.0) for shift in shifts]
    best = max(shifted, key=lambda r: leakage_fit_r2(tumour, r, dt_s, arrival))
    corrected, _, _ = leakage_correction(tumour[None], best, dt_s, arrival)
    return float(blood_volume(corrected, dt_s, arrival)[0] / blood_volume(reference, dt_s, arrival)[0])


def residue_tail(tumour: np.ndarray, reference: np.ndarray, dt_s: float, arrival: int, tail_s: float = 25.0,
                 threshold: float = 0.1) -> float:
    start = max(arrival - 2, 0)
    tissue, ref = tumour[start:], reference[start:]
    n = len(ref)
    padded = np.concatenate([ref, np.zeros(n)])
    circulant = padded[(np.arange(2 * n)[:, None] - np.arange(2 * n)[None, :]) % (2 * n)] * dt_s
    u, s, vt = np.linalg.svd(circulant)
    inverse = (vt.T * np.where(s > threshold * s.max(), 1.0 / s, 0.0)) @ u.T
    residue = (inverse @ np.concatenate([tissue, np.zeros(n)]))[:n]
    reference_residue = (inverse @ padded)[:n]
    times = np.arange(n) * dt_s
    late = times >= tail_s
    slope, intercept = np.polyfit(times[late], residue[late], 1)
    return float((residue - (intercept + slope * times)).sum() / reference_residue.sum())


METHODS = {"BSW (shipped)": bsw, "BSW + arrival-time correction": bsw_arrival_corrected,
           "residue tail (25 s)": residue_tail,
           "residue tail (20 s)": lambda *a: residue_tail(*a, tail_s=20.0),
           "residue tail (35 s)": lambda *a: residue_tail(*a, tail_s=35.0)}


def real_curves() -> dict[str, object] | None:
    real = real_dsc_curves()
    if real is None:
        return None
    curve, acquisition = real
    tr, te1, te2 = acquisition["RepetitionTime"], acquisition["EchoTime1"], acquisition["EchoTime2"]
    arrival = bolus_arrival(curve["nawm_te2"])
    dual = {r: dual_echo_delta_r2(curve[f"{r}_te1"], curve[f"{r}_te2"], te1, te2, arrival) for r in ("nawm", "tumour")}
    single = {r: delta_r2(curve[f"{r}_te2"], arrival, te2) for r in ("nawm", "tumour")}
    reference = bsw(dual["tumour"], dual["nawm"], tr, arrival)
    return {"dual_echo_reference": reference,
            "single_echo": {name: method(single["tumour"], single["nawm"], tr, arrival) for name, method in METHODS.items()}}


def simulated(repeats: int = 20, seed: int = 1) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    tr, times = 1.5, np.arange(80) * 1.5
    rows = []
    for k2 in (0.0, 0.02, 0.04):
        for mtt in (4.0, 6.0):
            errors: dict[str, list[float]] = {name: [] for name in METHODS}
            for _ in range(repeats):
                c_a = arterial_concentration(rng, times, rng.uniform(15.0, 30.0))
                white = tissue_delta_r2(c_a, tr, 0.02, 4.0)
                tumour = tissue_delta_r2(c_a, tr, 0.02 * SIMULATED_RCBV, mtt) - k2 * np.cumsum(white) * tr
                white_signal = np.exp(-0.03 * white) * (1 + 0.005 * rng.standard_normal(len(times)))
                tumour_signal = np.exp(-0.03 * tumour) * (1 + 0.01 * rng.standard_normal(len(times)))
                arrival = bolus_arrival(white_signal)
                tumour_dr2, white_dr2 = delta_r2(tumour_signal, arrival, 0.03), delta_r2(white_signal, arrival, 0.03)
                for name, method in METHODS.items():
                    errors[name].append(method(tumour_dr2, white_dr2, tr, arrival) / SIMULATED_RCBV - 1.0)
            rows.append({"k2": k2, "tumour_mtt_s": mtt, "relative_error": {
                name: {"mean": float(np.mean(v)), "sd": float(np.std(v))} for name, v in errors.items()}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dsc_leakage.json"))
    args = parser.parse_args()
    real, simulation = real_curves(), simulated()
    if real:
        print(f"real curves: dual-echo rCBV {real['dual_echo_reference']:.2f}")
        for name, value in real["single_echo"].items():
            print(f"  {name:32s} single-echo rCBV {value:6.2f}")
    else:
        print("real curves not found (../shared/realdata/dsc-roi-curves): simulated only")
    print(f"simulated curves (truth rCBV {SIMULATED_RCBV}), relative error mean (sd) over 20 noisy draws:")
    print("  K2     MTT  " + "  ".join(f"{name[:22]:>22s}" for name in METHODS))
    for row in simulation:
        cells = "  ".join(f"{e['mean']:+10.3f} ({e['sd']:.3f})" for e in row["relative_error"].values())
        print(f"  {row['k2']:.2f}  {row['tumour_mtt_s']:4.1f}  {cells}")
    record = {"date": dt.date.today().isoformat(), "real_curves": real, "simulated": simulation,
              "simulated_truth_rcbv": SIMULATED_RCBV}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
