"""Cohort evaluation of the perfusion model (Choi et al. 2019): a stratified held-out test split
and 5-fold cross-validation on the rest, patient-level throughout; logistic baselines (age +
mean rCBV, age + enhancement) on the same splits, compared by DeLong's test; temporal patterns
by genotype.

Deviation: Choi et al. report the average of the five fold models' performances; we pool the
out-of-fold predictions of the five models and compute each metric once over all development
patients, which gives one ROC curve, one bootstrap interval and a DeLong test on the same
patients (averaging per-fold AUCs of ~8 patients each would be noisier and has no DeLong test)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..compute import all_succeeded, map_cases
from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.cohort import cohort_record, read_cohort
from ..validation.calibration import CROSS_FITTED, PlattCalibrator, calibration_summary, cross_fitted_probabilities
from ..validation.delong import delong_test
from ..validation.metrics import metrics_with_ci
from ..validation.report import EvaluationResult, write_report
from ..validation.splits import check_split_plan, test_split_size
from .analysis import analyse_dsc, read_perfusion_case
from .curves import WHOLE_CHANNEL, PatientCurves, patient_curves, sliding_windows
from .model_bundle import save_perfusion_model
from .patterns import attention_heatmap, curve_segments, full_curve_attention, pattern_table, temporal_pattern
from .permutation import lstm_permutation_test
from .training import LstmTraining, out_of_fold_lstm, predict_patients, train_lstm

ProgressFactory = Callable[[str], Callable[[int, int], None]]


@dataclass
class PerfusionSettings:
    """What ``idh-predictor perfusion`` evaluates and how."""

    folds: int = 5
    test_fraction: float = 0.1
    permute_labels: bool = False
    permutation_shuffles: int = 0   # label-permutation test of the LSTM's cross-validation (20 or more)
    seed: int = 0
    workers: int = 1                # processes for the fold networks
    training: LstmTraining = field(default_factory=LstmTraining)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class CohortPerfusion:
    """Per patient: curves, windows and conventional statistics."""

    curves: list[PatientCurves]
    windows: np.ndarray
    statistics: list[dict[str, float | None]]


def analyse_case(folder: Path) -> tuple[PatientCurves, dict[str, object]]:
    """One case's DSC analysis: its curves and conventional statistics (with its DSC verdicts)."""
    case = read_perfusion_case(folder)
    analysis = analyse_dsc(case.dsc, case.labels, case.reference)
    # each series' DSC verdicts stay beside its rCBV (patterns.json) and are counted in the report
    return patient_curves(analysis), {**analysis.statistics, "dsc_quality": analysis.quality.verdict,
                                      "dsc_flags": [c.name for c in analysis.quality.problems()]}


def analyse_cohort(folders: list[Path], progress: Callable[[int, int], None] | None = None,
                   workers: int = 1) -> CohortPerfusion:
    """Analyse every case's DSC series (on the cluster when one is in use; here by default, as a
    case takes about half a second); cases without a usable series are named together once the
    others are done."""
    results = all_succeeded(map_cases(analyse_case, [(Path(f),) for f in folders], [Path(f).name for f in folders],
                                      workers, progress), "DSC analysis")
    curves = [c for c, _ in results]
    return CohortPerfusion(curves, np.stack([sliding_windows(c.curves) for c in curves]), [s for _, s in results])


def dsc_quality_counts(statistics: list[dict]) -> dict[str, object]:
    """How many series the DSC quality control flagged, and by which check."""
    flags = [flag for s in statistics for flag in s.get("dsc_flags", [])]
    return {"series": len(statistics), "flagged": sum(1 for s in statistics if s.get("dsc_flags")),
            "by_check": {name: flags.count(name) for name in sorted(set(flags))}}


def _baseline(features: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(features[train], y[train])
    return model.predict_proba(features[test])[:, 1]


def evaluate_perfusion(cohort_dir: Path, out_dir: Path, settings: PerfusionSettings,
                       progress: ProgressFactory | None = None, save_model: Path | None = None) -> dict[str, object]:
    """Run the evaluation; write report.json, table.md, roc.png, patterns.json and heat maps.
    With ``permutation_shuffles`` the LSTM's cross-validation is repeated under shuffled labels,
    reusing the DSC analysis (it is label-free)."""
    if save_model is not None and settings.permute_labels:
        raise InputError(save_model, "a model trained on permuted labels would be meaningless", "Drop --save-model or --permute-labels")
    stage = progress or (lambda _name: None)
    cases = read_cohort(cohort_dir)
    y = np.array([c.idh_mutant for c in cases], dtype=int)
    check_split_plan(y, Path(cohort_dir) / "clinical.csv", settings.folds, settings.test_fraction)
    if settings.permutation_shuffles < 0:
        raise InputError(None, f"--permutation-test {settings.permutation_shuffles}: the number of shuffles cannot be negative",
                         "Give 20 or more shuffles, or leave the option out")
    if settings.permute_labels:
        y = np.random.default_rng(settings.seed).permutation(y)
    cohort = analyse_cohort([c.folder for c in cases], stage("DSC analysis"))
    age = np.array([c.age for c in cases])
    baselines = {"age + mean rCBV": np.column_stack([age, [s["rcbv_mean"] for s in cohort.statistics]]),
                 "age + enhancement": np.column_stack([age, [float(c.present[0]) for c in cohort.curves]])}
    patients = np.arange(len(y))
    development, test = train_test_split(patients, test_size=test_split_size(len(y), settings.test_fraction), stratify=y,
                                         random_state=settings.seed)
    folds = [(development[train], development[held]) for train, held in
             StratifiedKFold(settings.folds, shuffle=True, random_state=settings.seed).split(development, y[development])]

    oof = {name: np.full(len(y), np.nan) for name in baselines}
    oof["LSTM"], attention = out_of_fold_lstm(cohort.windows, y, folds, settings.training, settings.workers,
                                              stage(f"LSTM {settings.folds}-fold CV"))
    for train, held in folds:
        for name, features in baselines.items():
            oof[name][held] = _baseline(features, y, train, held)
    final, history = train_lstm(cohort.windows[development], y[development], settings.training, progress=stage("LSTM final"))
    test_probabilities, attention[test] = predict_patients(final, cohort.windows[test])
    test_scores = {"LSTM": test_probabilities}
    for name, features in baselines.items():
        test_scores[name] = _baseline(features, y, development, test)

    # the LSTM's mean sigmoid is inflated by the class-weighted loss: Platt scaling of its logit,
    # cross-fitted over the development patients, and fitted on all of them for the test split
    calibrator = PlattCalibrator(on_logit=True).fit(oof["LSTM"][development], y[development])
    calibrated = {"LSTM": (cross_fitted_probabilities(oof["LSTM"][development], y[development], seed=settings.seed, on_logit=True),
                           calibrator.predict_proba(test_scores["LSTM"]))}
    results = []
    for name in ("LSTM", *baselines):
        label = "Attention-LSTM" if name == "LSTM" else f"Logistic regression: {name}"
        for column, (section, index, scores) in enumerate(
                ((f"{settings.folds}-fold cross-validation", development, oof[name][development]),
                 ("Held-out test split", test, test_scores[name]))):
            metrics = metrics_with_ci(y[index], scores, threshold=0.5, seed=settings.seed)
            result = EvaluationResult(label, section, "cv" if "fold" in section else "test", y[index], scores, metrics)
            shown = calibrated[name][column] if name in calibrated else scores  # logistic baselines: their own output
            if shown is not None and len(np.unique(y[index])) == 2:
                kind = ((CROSS_FITTED if column == 0 else "Platt-scaled on the development patients") if name in calibrated
                        else "logistic regression output")
                result.extra["calibration"] = calibration_summary(y[index], shown, kind)
                if name in calibrated:
                    result.extra["calibration_uncalibrated"] = calibration_summary(y[index], scores, "network output (uncalibrated)")
            results.append(result)
    comparisons = {name: delong_test(y[development], oof["LSTM"][development], oof[name][development]) for name in baselines}
    if settings.permutation_shuffles:
        lstm_cv = next(r for r in results if r.name == "Attention-LSTM" and r.validation == "cv")
        lstm_cv.extra["permutation_test"] = lstm_permutation_test(
            cohort.windows, y, development, folds, settings.training, lstm_cv.metrics["auc"]["value"],
            settings.permutation_shuffles, settings.seed, settings.workers,
            stage(f"permutation test ({settings.permutation_shuffles} shuffles, {settings.folds}-fold)"))

    patterns, summed_patterns = [], []
    for curves, weights in zip(cohort.curves, attention):
        full, segments = full_curve_attention(weights), curve_segments(curves.curves[WHOLE_CHANNEL], curves.grid_s)
        patterns.append(temporal_pattern(full, segments, rank_by="mean")[0])
        summed_patterns.append(temporal_pattern(full, segments, rank_by="sum")[0])
    table = pattern_table(patterns, y, settings.seed)
    out_dir = Path(out_dir)
    title = "IDH prediction from DSC perfusion" + (" (labels permuted: leakage check)" if settings.permute_labels else "")
    write_report(out_dir, results, title, {**settings.as_dict(), "cohort": str(cohort_dir), "patients": len(y),
                                           "test_patients": len(test), "delong": comparisons})
    for genotype, flag in (("mutant", 1), ("wildtype", 0)):
        example = int(development[y[development] == flag][0]) if np.any(y[development] == flag) else None
        if example is not None:
            attention_heatmap(cohort.curves[example].curves, full_curve_attention(attention[example]),
                              cohort.curves[example].grid_s, out_dir / f"attention-{genotype}.png",
                              f"{cases[example].case_id} ({genotype}): TP{patterns[example]}", cohort.curves[example].present)
    summary = {"delong": comparisons, "patterns": table,
               "patterns_by_summed_attention": pattern_table(summed_patterns, y, settings.seed),
               "dsc_quality": dsc_quality_counts(cohort.statistics),
               "rcbv": [{"case_id": c.case_id, **s} for c, s in zip(cases, cohort.statistics)],
               "patient_patterns": {c.case_id: p for c, p in zip(cases, patterns)}}
    with atomic_path(out_dir / "patterns.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if save_model is not None:
        cv_metrics = {r.name: r.metrics for r in results if r.validation == "cv"}
        lstm_cv = next(r for r in results if r.name == "Attention-LSTM" and r.validation == "cv")
        shown_calibration = ({k: lstm_cv.extra["calibration"][k] for k in ("brier", "ece", "patients")}
                             if "calibration" in lstm_cv.extra else None)
        save_perfusion_model(save_model, final, {"training": settings.training.as_dict(), "history": history,
                                                 "calibration": {**calibrator.as_dict(), "fitted_on": (
                                                     f"out-of-fold outputs of the {len(development)} development patients"),
                                                                 "cv_simulated": shown_calibration},
                                                 "training_cohort": {**cohort_record(cohort_dir),
                                                                     "patients": int(len(development))},
                                                 "metrics": {"cv_simulated": cv_metrics}})
    return {"results": results, **summary}
