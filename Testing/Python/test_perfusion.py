"""DSC perfusion: kinetics against analytic values, AIF location, curves, the attention-LSTM,
temporal patterns, DeLong's test and the perfusion command on a small phantom cohort."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from sklearn.metrics import roc_auc_score

from IDHPredictorLib.cli import main
from IDHPredictorLib.errors import InputError
from IDHPredictorLib.io.cohort import case_folders
from IDHPredictorLib.io.dsc import DscSeries
from IDHPredictorLib.perfusion.analysis import analyse_dsc, read_perfusion_case
from IDHPredictorLib.perfusion.curves import GRID_FRAMES, WINDOW_FRAMES, WINDOWS, patient_curves, sliding_windows
from IDHPredictorLib.perfusion.kinetics import blood_volume, bolus_arrival, delta_r2, leakage_correction
from IDHPredictorLib.perfusion.network import AttentionLSTM
from IDHPredictorLib.perfusion.patterns import PATTERN_NUMBER, SEGMENTS, curve_segments, temporal_pattern
from IDHPredictorLib.perfusion.training import LstmTraining, predict_patients, train_lstm
from IDHPredictorLib.phantom.dsc import gamma_variate, tissue_delta_r2
from IDHPredictorLib.validation.calibration import PlattCalibrator
from IDHPredictorLib.validation.delong import delong_test

TR, TE = 1.5, 0.03
TIMES = np.arange(60) * TR


def _tissue_signal(cbv: float, leakage: float = 0.0, s0: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
    """Signal of tissue with blood volume ``cbv`` (and BSW leakage K2), and the reference delta-R2*."""
    arterial = 8.0 * gamma_variate(TIMES, 15.0, 3.0, 1.5)
    reference = tissue_delta_r2(arterial, TR, 0.03, 4.0)
    tissue = tissue_delta_r2(arterial, TR, cbv, 4.0) - leakage * np.cumsum(reference) * TR
    return s0 * np.exp(-TE * tissue), reference


def test_rcbv_of_known_kinetics_matches_the_analytic_ratio() -> None:
    high, _ = _tissue_signal(0.06)
    low, _ = _tissue_signal(0.02, s0=800.0)
    arrival = bolus_arrival(high)
    assert TIMES[arrival] == pytest.approx(15.0, abs=2 * TR)
    volumes = blood_volume(delta_r2(np.stack([high, low]), arrival, TE), TR, arrival)
    assert volumes[0] / volumes[1] == pytest.approx(3.0, rel=0.02)  # rCBV = 0.06 / 0.02


def test_leakage_correction_recovers_the_true_blood_volume() -> None:
    truth, reference = _tissue_signal(0.05)
    leaky, _ = _tissue_signal(0.05, leakage=0.01)
    arrival = bolus_arrival(truth)
    true_volume = blood_volume(delta_r2(truth, arrival, TE), TR, arrival)[0]
    measured = delta_r2(leaky, arrival, TE)
    uncorrected = blood_volume(measured, TR, arrival)[0]
    corrected, _, k2 = leakage_correction(measured, reference, TR, arrival)
    assert abs(uncorrected / true_volume - 1) > 0.2  # leakage biases it...
    assert blood_volume(corrected, TR, arrival)[0] == pytest.approx(true_volume, rel=0.03)  # ...correction undoes it
    assert k2[0] == pytest.approx(0.01, rel=0.05)


def test_aif_is_found_at_the_phantoms_artery_and_rcbv_follows_truth(small_cohort: Path) -> None:
    folders = case_folders(small_cohort)
    measured, truth = [], []
    rows = {line.split(",")[0]: line.split(",") for line in (small_cohort / "clinical.csv").read_text().splitlines()}
    header = rows.pop("case_id")
    for folder in folders:
        case = read_perfusion_case(folder)
        analysis = analyse_dsc(case.dsc, case.labels, case.reference)
        true_aif = np.array([v[::-1] for v in json.loads(next(folder.glob("*_dsc.json")).read_text())["AifVoxels"]])
        distance = np.linalg.norm(analysis.aif.voxels[:, None, :] - true_aif[None], axis=2).min(axis=1)
        assert distance.max() <= 2, (folder.name, analysis.aif.voxels.tolist(), true_aif.tolist())
        measured.append(analysis.statistics["rcbv_p95"])
        truth.append(float(rows[folder.name][header.index("rcbv_true")]))
    assert np.corrcoef(measured, truth)[0, 1] > 0.8


def test_curves_have_five_channels_and_eight_windows(small_cohort: Path) -> None:
    case = read_perfusion_case(case_folders(small_cohort)[0])
    curves = patient_curves(analyse_dsc(case.dsc, case.labels, case.reference))
    assert curves.curves.shape == (5, GRID_FRAMES) and np.isfinite(curves.curves).all()
    for present, channel in zip(curves.present, curves.curves):
        assert (abs(channel.mean()) < 1e-5 and abs(channel.std() - 1) < 1e-4) if present else not channel.any()
    windows = sliding_windows(curves.curves)
    assert windows.shape == (WINDOWS, 5, WINDOW_FRAMES)
    np.testing.assert_array_equal(windows[3], curves.curves[:, 3:3 + WINDOW_FRAMES])


def test_attention_sums_to_one_over_the_sequence() -> None:
    torch.manual_seed(0)
    logits, attention = AttentionLSTM()(torch.randn(7, 5, WINDOW_FRAMES))
    assert logits.shape == (7,) and attention.shape == (7, WINDOW_FRAMES)
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(7))


def _delayed_bolus_cohort(patients: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of synthetic 5-channel curves; class 1's bolus comes 6 s later."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], patients // 2)
    grid = np.arange(GRID_FRAMES) * 1.5
    windows = []
    for label in y:
        dip = -gamma_variate(grid, 12.0 + 6.0 * label + rng.uniform(-1, 1), 3.0, 1.5)
        curves = np.stack([dip * rng.uniform(0.5, 1.5) + 0.05 * rng.standard_normal(GRID_FRAMES) for _ in range(5)])
        curves = (curves - curves.mean(axis=1, keepdims=True)) / curves.std(axis=1, keepdims=True)
        windows.append(sliding_windows(curves))
    return np.stack(windows), y


def test_lstm_learns_a_delayed_bolus() -> None:
    windows, y = _delayed_bolus_cohort(40, seed=1)
    model, history = train_lstm(windows, y, LstmTraining(epochs=40, patience=40, seed=0, device="cpu"))
    test_windows, test_y = _delayed_bolus_cohort(20, seed=2)
    probabilities, attention = predict_patients(model, test_windows)
    assert np.mean((probabilities > 0.5) == test_y) >= 0.9, history[-1]
    assert attention.shape == (20, WINDOWS, WINDOW_FRAMES)


def test_lstm_permutation_test_separates_a_signal_from_shuffled_labels() -> None:
    from IDHPredictorLib.perfusion.permutation import lstm_permutation_test
    from IDHPredictorLib.perfusion.training import out_of_fold_lstm
    from IDHPredictorLib.validation.splits import repeated_kfold

    windows, y = _delayed_bolus_cohort(30, seed=3)
    development = np.arange(len(y))
    folds = repeated_kfold(y, 3, 1, seed=0)[0]
    options = LstmTraining(epochs=20, patience=20, learning_rate=1e-2, seed=0, device="cpu")
    probabilities, attention = out_of_fold_lstm(windows, y, folds, options)
    assert np.isfinite(probabilities).all() and attention.shape == (30, WINDOWS, WINDOW_FRAMES)
    observed = roc_auc_score(y, probabilities)
    assert observed > 0.9
    result = lstm_permutation_test(windows, y, development, folds, options, observed, shuffles=3, seed=0)
    assert len(result["null_aucs"]) == 3 and result["observed_auc"] == observed
    assert max(result["null_aucs"]) < observed and result["p_value"] == pytest.approx(1 / 4)
    # the fold networks in two processes: the same first shuffle, the same networks up to thread-count rounding
    parallel = lstm_permutation_test(windows, y, development, folds, options, observed, shuffles=1, seed=0, workers=2)
    assert parallel["null_aucs"][0] == pytest.approx(result["null_aucs"][0], abs=0.05)


def test_temporal_pattern_numbering() -> None:
    grid = -6.0 + 1.5 * np.arange(20)
    curve = np.concatenate([np.zeros(4), [-1, -3, -5], [-3, -1, -0.2], np.full(10, -0.2)])
    segments = curve_segments(curve, grid)
    assert segments.tolist() == [0] * 4 + [1] * 3 + [2] * 2 + [3] * 11
    for pair, number in PATTERN_NUMBER.items():
        attention = np.full(20, 0.01)
        for name in pair:
            attention[segments == SEGMENTS.index(name)] = 1.0
        assert temporal_pattern(attention / attention.sum(), segments) == (number, pair)
    assert PATTERN_NUMBER[("baseline", "downslope")] == 1 and PATTERN_NUMBER[("upslope", "plateau")] == 6
    assert PATTERN_NUMBER[("downslope", "upslope")] == 4


def test_delong_against_a_known_case() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    perfect = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    result = delong_test(y, perfect, perfect)
    assert result["auc_a"] == 1.0 and result["p_value"] == 1.0
    weaker = np.array([0.9, 0.2, 0.7, 0.35, 0.4, 0.3, 0.8, 0.1])
    assert delong_test(y, perfect, weaker)["auc_b"] == pytest.approx(10 / 16)


def _delong_by_definition(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Variance, z and p of AUC(a) - AUC(b), written out from DeLong et al. (1988) eqs. 1-5 with
    explicit loops over every positive-negative pair (no midranks, no vectorisation)."""
    import math

    def psi(x: float, yv: float) -> float:
        return 1.0 if x > yv else 0.5 if x == yv else 0.0

    pos, neg = [i for i in range(len(y)) if y[i]], [i for i in range(len(y)) if not y[i]]
    m, n = len(pos), len(neg)
    components = []
    for scores in (a, b):
        v10 = [sum(psi(scores[i], scores[j]) for j in neg) / n for i in pos]
        v01 = [sum(psi(scores[i], scores[j]) for i in pos) / m for j in neg]
        components.append((sum(v10) / m, v10, v01))
    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = components

    def covariance(u: list, ub: float, v: list, vb: float) -> float:
        return sum((p - ub) * (q - vb) for p, q in zip(u, v)) / (len(u) - 1)

    s10 = [[covariance(x, auc_x, z, auc_z) for z, auc_z in ((v10_a, auc_a), (v10_b, auc_b))] for x, auc_x in ((v10_a, auc_a), (v10_b, auc_b))]
    s01 = [[covariance(x, auc_x, z, auc_z) for z, auc_z in ((v01_a, auc_a), (v01_b, auc_b))] for x, auc_x in ((v01_a, auc_a), (v01_b, auc_b))]
    variance = sum(sign * (s10[i][j] / m + s01[i][j] / n) for i, j, sign in ((0, 0, 1), (1, 1, 1), (0, 1, -2)))
    z = (auc_a - auc_b) / math.sqrt(variance)
    return variance, z, math.erfc(abs(z) / math.sqrt(2))


def test_delong_variance_z_and_p_against_the_definition() -> None:
    generator = np.random.default_rng(8)
    y = np.repeat([1, 0], [9, 14])
    a = np.round(generator.normal(size=23) + 1.0 * y, 1)  # rounded: ties between and within scores
    b = np.round(0.6 * a + generator.normal(size=23) * 0.8, 1)
    result = delong_test(y, a, b)
    variance, z, p = _delong_by_definition(y, a, b)
    assert result["variance"] == pytest.approx(variance, rel=1e-12)
    assert result["z"] == pytest.approx(z, rel=1e-12) and result["p_value"] == pytest.approx(p, rel=1e-10)
    assert 0.0 < result["p_value"] < 1.0 and result["variance"] > 0


def test_bad_series_give_clear_errors(small_cohort: Path) -> None:
    flat = np.full(40, 1000.0)
    with pytest.raises(InputError, match="no contrast bolus"):
        bolus_arrival(flat)
    case = read_perfusion_case(case_folders(small_cohort)[0])
    no_te = DscSeries(case.dsc.image, case.dsc.repetition_time_s, None, case.dsc.source)
    with pytest.raises(InputError, match="echo time"):
        analyse_dsc(no_te, case.labels, case.reference)
    moved = sitk.Image(case.dsc.image)
    moved.SetOrigin([o + 500.0 for o in moved.GetOrigin()[:3]] + [0.0])
    with pytest.raises(InputError, match="does not overlap"):
        analyse_dsc(DscSeries(moved, 1.5, 0.03, case.dsc.source), case.labels, case.reference)


def test_perfusion_and_predict_commands(perfusion_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from IDHPredictorLib.perfusion import evaluate as evaluate_module
    from IDHPredictorLib.perfusion import training as training_module

    seen: list[set[bytes]] = []
    real_train = evaluate_module.train_lstm

    def recording(windows, y, *args, **kwargs):
        seen.append({w.tobytes() for w in windows})  # one entry per patient (its 8 windows together)
        return real_train(windows, y, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "train_lstm", recording)  # the final model
    monkeypatch.setattr(training_module, "train_lstm", recording)  # the fold models (in this process: --workers 1)
    out = tmp_path / "perfusion"
    assert main(["perfusion", str(perfusion_cohort), "--out", str(out), "--folds", "3", "--test-fraction", "0.25",
                 "--epochs", "3", "--permutation-test", "2", "--save-model", str(tmp_path / "lstm")]) == 0
    report = json.loads((out / "report.json").read_text())
    names = {(r["name"], r["section"]) for r in report["results"]}
    assert ("Attention-LSTM", "3-fold cross-validation") in names and ("Attention-LSTM", "Held-out test split") in names
    assert any(name.startswith("Logistic regression: age + mean rCBV") for name, _ in names)
    for result in report["results"]:
        assert set(result["metrics"]) == {"auc", "acc", "sens", "spec", "ppv", "npv", "mcc"}
    assert set(report["settings"]["delong"]) == {"age + mean rCBV", "age + enhancement"}
    patterns = json.loads((out / "patterns.json").read_text())
    assert sum(c["mutant"] + c["wildtype"] for c in patterns["patterns"]["counts"].values()) == 16
    # every series' DSC verdicts beside its rCBV, and counted
    assert patterns["dsc_quality"]["series"] == 16 and all("dsc_quality" in row for row in patterns["rcbv"])
    assert patterns["dsc_quality"]["flagged"] == sum(1 for row in patterns["rcbv"] if row["dsc_flags"])
    assert (out / "attention-mutant.png").exists() and (out / "attention-wildtype.png").exists()
    # 3 fold models, the final one, then 3 per shuffle; the final model's patients are the union
    # of the folds' patients, and every shuffle retrains on exactly the folds' patients
    assert len(seen) == 4 + 2 * 3
    for fold_patients in seen[:3]:
        assert fold_patients < seen[3]
    held_out = [seen[3] - fold for fold in seen[:3]]
    assert all(not (a & b) for i, a in enumerate(held_out) for b in held_out[i + 1:])  # folds never share a patient
    assert seen[4:] == seen[:3] * 2
    lstm_cv = next(r for r in report["results"] if r["name"] == "Attention-LSTM" and r["validation"] == "cv")
    permutation = lstm_cv["permutation_test"]
    assert permutation["shuffles"] == 2 and len(permutation["null_aucs"]) == 2
    assert permutation["observed_auc"] == lstm_cv["metrics"]["auc"]["value"]
    case = case_folders(perfusion_cohort)[0]
    assert main(["predict", str(case), "--skip-dlr", "--perfusion-model", str(tmp_path / "lstm"),
                 "--heatmap", str(tmp_path / "heat.png"), "--rcbv-map", str(tmp_path / "rcbv.nii.gz"),
                 "--out", str(tmp_path / "p.json")]) == 0
    prediction = json.loads((tmp_path / "p.json").read_text())["perfusion"]
    assert 0 <= prediction["idh_mutant_probability"] <= 1 and prediction["temporal_pattern"] in {f"TP{n}" for n in range(1, 7)}
    # the probability shown is the network output through the bundle's Platt scaling, and the class follows it
    bundle_calibration = json.loads((tmp_path / "lstm" / "model.json").read_text())["calibration"]
    assert prediction["calibration"] == bundle_calibration and bundle_calibration["on_logit"]
    expected = PlattCalibrator.from_dict(bundle_calibration).predict_proba(np.array([prediction["network_output"]]))[0]
    assert prediction["idh_mutant_probability"] == pytest.approx(expected)
    assert prediction["predicted_class"] == ("mutant" if expected >= 0.5 else "wildtype")
    lstm_test = next(r for r in report["results"] if r["name"] == "Attention-LSTM" and r["validation"] == "test")
    assert {"brier", "ece", "reliability"} <= set(lstm_test["calibration"]) and "calibration_uncalibrated" in lstm_test
    assert (out / "reliability.png").exists() and "## Calibration" in (out / "table.md").read_text()
    assert len(prediction["attention"]) == GRID_FRAMES and (tmp_path / "heat.png").read_bytes()[:4] == b"\x89PNG"
    assert prediction["rcbv"]["rcbv_mean"] > 0
    rcbv = sitk.ReadImage(str(tmp_path / "rcbv.nii.gz"))
    assert rcbv.GetDimension() == 3 and sitk.GetArrayViewFromImage(rcbv).max() > 1


def test_rigid_registration_recovers_a_shift_between_dsc_and_structural(small_cohort: Path) -> None:
    from IDHPredictorLib.perfusion.analysis import dsc_to_structural

    case = read_perfusion_case(case_folders(small_cohort)[1])
    shifted = sitk.Image(case.dsc.image)
    shifted.SetOrigin([o + d for o, d in zip(shifted.GetOrigin(), (6.0, 0.0, 0.0, 0.0))])  # patient moved 6 mm
    moved = DscSeries(shifted, case.dsc.repetition_time_s, case.dsc.echo_time_s, case.dsc.source)
    reference = dsc_to_structural(case.dsc, case.reference).TransformPoint((0.0, 0.0, 0.0))
    recovered = dsc_to_structural(moved, case.reference).TransformPoint((0.0, 0.0, 0.0))
    assert np.subtract(reference, recovered) == pytest.approx((6.0, 0.0, 0.0), abs=1.5)


def test_shipped_perfusion_bundle_predicts_a_phantom_case(small_cohort: Path, tmp_path: Path) -> None:
    from IDHPredictorLib.perfusion.model_bundle import DEFAULT_PERFUSION_MODEL, load_perfusion_model, predict_perfusion

    result = predict_perfusion(case_folders(small_cohort)[0], DEFAULT_PERFUSION_MODEL)
    assert 0 <= result["idh_mutant_probability"] <= 1 and "simulated" in result["note"]
    assert result["calibration"]["cv_simulated"]["patients"] == 270
    # the series' verdicts travel with the rCBV and the LSTM prediction made from it
    checks = {c["name"] for c in result["dsc_quality"]["checks"]}
    assert {"dsc_baseline", "dsc_bolus_coverage", "dsc_t1_leakage", "dsc_leakage_fit", "dsc_rcbv", "dsc_aif"} <= checks
    assert result["lstm_input_flagged"] == (result["dsc_quality"]["verdict"] != "pass")
    # a bundle without a calibrator would show a raw, inflated probability: refused
    uncalibrated = tmp_path / "uncalibrated"
    shutil.copytree(DEFAULT_PERFUSION_MODEL, uncalibrated)
    record = json.loads((uncalibrated / "model.json").read_text())
    del record["calibration"]
    (uncalibrated / "model.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match="no probability calibration"):
        load_perfusion_model(uncalibrated)


def test_dsc_files_without_time_axis_or_tr_are_refused(small_cohort: Path, tmp_path: Path) -> None:
    from IDHPredictorLib.io.dsc import read_dsc_series

    case = read_perfusion_case(case_folders(small_cohort)[0])
    sitk.WriteImage(case.dsc.frame_geometry(), str(tmp_path / "three_d_dsc.nii.gz"))
    with pytest.raises(InputError, match="three_d_dsc.nii.gz"):
        read_dsc_series(tmp_path / "three_d_dsc.nii.gz")
    no_tr = sitk.Image(case.dsc.image)
    no_tr.SetSpacing([*no_tr.GetSpacing()[:3], 1.0])
    sitk.WriteImage(no_tr, str(tmp_path / "P_dsc.nii.gz"))  # no sidecar beside it
    with pytest.raises(InputError, match="TR unknown: no sidecar JSON"):
        read_dsc_series(tmp_path / "P_dsc.nii.gz")


def _simulated_curves(k2: float, tr: float = 1.5, frames: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """White-matter and enhancing-tumour signal (TE 30 ms) and the arterial delta-R2*, by the
    phantom's kinetics, with the tumour's BSW leakage K2 = ``k2``; and the bolus arrival frame."""
    from IDHPredictorLib.perfusion.kinetics import bolus_arrival
    from IDHPredictorLib.phantom.dsc import R2_ARTERY, arterial_concentration, tissue_delta_r2

    t = np.arange(frames) * tr
    c_a = arterial_concentration(np.random.default_rng(0), t, 30.0)
    white = tissue_delta_r2(c_a, tr, 0.02, 4.0)
    tumour = tissue_delta_r2(c_a, tr, 0.06, 4.0) - k2 * np.cumsum(white) * tr  # same MTT: BSW's own assumption
    white_signal, tumour_signal = np.exp(-0.03 * white), np.exp(-0.03 * tumour)
    return white_signal, tumour_signal, R2_ARTERY * c_a, bolus_arrival(white_signal)


@pytest.mark.parametrize("k2, flagged", [(0.0, False), (0.04, True)])
def test_strong_t1_leakage_on_a_single_echo_series_is_flagged(k2: float, flagged: bool) -> None:
    from IDHPredictorLib.perfusion.dsc_quality import dsc_curve_quality, single_echo_roi_rcbv
    from IDHPredictorLib.perfusion.kinetics import delta_r2

    white, tumour, arterial, arrival = _simulated_curves(k2)
    estimate = single_echo_roi_rcbv(tumour, white, 0.03, 1.5, arrival)
    quality = dsc_curve_quality(tumour, white, arterial, delta_r2(white, arrival, 0.03), arrival, estimate["rcbv"],
                                estimate["leakage_fit_r2"])
    verdicts = {c.name: c.verdict for c in quality.checks}
    assert verdicts["dsc_t1_leakage"] == ("warn" if flagged else "pass")
    assert verdicts["dsc_baseline"] == verdicts["dsc_bolus_coverage"] == verdicts["dsc_aif"] == "pass"
    if not flagged:  # without leakage the BSW estimate is the simulated ratio of blood volumes (3)
        assert estimate["rcbv"] == pytest.approx(3.0, rel=0.05) and quality.verdict == "pass"


def test_dual_echo_delta_r2_cancels_t1_effects() -> None:
    from IDHPredictorLib.perfusion.kinetics import delta_r2, dual_echo_delta_r2

    white, _, _, arrival = _simulated_curves(0.0)
    truth = -np.log(white) / 0.03  # the simulated delta-R2*, baseline 0
    t1_gain = 1.0 + 0.3 * np.clip(np.arange(len(white)) - arrival, 0, None) / len(white)  # leaked tracer shortens T1
    short_echo, long_echo = t1_gain * np.exp(-0.002 * truth), t1_gain * np.exp(-0.030 * truth)
    assert dual_echo_delta_r2(short_echo, long_echo, 0.002, 0.030, arrival) == pytest.approx(truth, abs=1e-9)
    assert not np.allclose(delta_r2(long_echo, arrival, 0.030), truth, atol=0.5)  # a single echo cannot


def test_real_dsc_curves_single_echo_rcbv_is_near_the_dual_echo_reference_or_flagged() -> None:
    """The real dual-echo curves (../shared/realdata/dsc-roi-curves; skipped without them): the
    shipped single-echo analysis either agrees with the T1-free dual-echo rCBV or says it cannot."""
    from IDHPredictorLib.perfusion.dsc_quality import dsc_curve_quality, roi_rcbv, single_echo_roi_rcbv
    from IDHPredictorLib.perfusion.kinetics import bolus_arrival, delta_r2, dual_echo_delta_r2
    from IDHPredictorLib.phantom.realism import real_dsc_curves

    real = real_dsc_curves()
    if real is None:
        pytest.skip("real DSC curves not found (../shared/realdata/dsc-roi-curves)")
    curve, acquisition = real
    tr, te1, te2 = acquisition["RepetitionTime"], acquisition["EchoTime1"], acquisition["EchoTime2"]
    arrival = bolus_arrival(curve["nawm_te2"])
    dual = {region: dual_echo_delta_r2(curve[f"{region}_te1"], curve[f"{region}_te2"], te1, te2, arrival)
            for region in ("nawm", "tumour")}
    reference = roi_rcbv(dual["tumour"], dual["nawm"], tr, arrival)["rcbv"]
    assert 1.0 < reference < 1.3  # the T1-free answer (then BSW for the T2* leakage left)
    single = single_echo_roi_rcbv(curve["tumour_te2"], curve["nawm_te2"], te2, tr, arrival)
    quality = dsc_curve_quality(curve["tumour_te2"], curve["nawm_te2"], delta_r2(curve["aif_te2"], arrival, te2),
                                delta_r2(curve["nawm_te2"], arrival, te2), arrival, single["rcbv"], single["leakage_fit_r2"])
    agrees = abs(single["rcbv"] - reference) <= 0.25 * reference
    verdicts = {c.name: c.verdict for c in quality.checks}
    assert agrees or verdicts["dsc_t1_leakage"] == "warn", (single, reference, quality.lines())
    # this tumour's signal rises above its baseline: the signature must fire whatever the estimate
    assert verdicts["dsc_t1_leakage"] == "warn"


def test_dual_echo_series_is_analysed_t1_free(dual_echo_cohort: Path) -> None:
    """A dual-echo phantom series goes through the T1-free delta-R2*; its rCBV agrees with the
    single-echo analysis of the same long echo (the phantom's leakage, T1 and T2* alike, is the
    kind BSW corrects)."""
    from dataclasses import replace

    folder = case_folders(dual_echo_cohort)[0]
    case = read_perfusion_case(folder)
    assert case.dsc.dual_echo
    dual = analyse_dsc(case.dsc, case.labels, case.reference)
    single = analyse_dsc(replace(case.dsc, short_echo=None, short_echo_time_s=None), case.labels, case.reference)
    t1_check = next(c for c in dual.quality.checks if c.name == "dsc_t1_leakage")
    assert t1_check.verdict == "pass" and "dual-echo" in t1_check.message
    assert dual.statistics["rcbv_mean"] == pytest.approx(single.statistics["rcbv_mean"], rel=0.15)
    assert not np.allclose(dual.rcbv, single.rcbv)  # a different delta-R2* went in
    # the phantom's leaked tracer shortens T1 and adds T2* leakage: the single echo sees the net
    # T1-dominant effect (BSW K2 > 0), the dual echo only the T2* part (K2 < 0), which BSW removes
    enhancing = dual.regions.subregions["enhancing"]
    assert np.median(dual.leakage_k2[enhancing]) < 0 < np.median(single.leakage_k2[enhancing])
