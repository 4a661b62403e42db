"""``idh-predictor fusion``: DLR, the perfusion LSTM and age (optionally radiomics) fused by
nested stacking, evaluated beside each component on the same patients and folds, with
calibration (Brier, ECE, reliability) and class-conditional conformal prediction sets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import expit

from ..dlr.evaluate import DlrSettings
from ..errors import InputError
from ..io.cohort import read_cohort
from ..perfusion.training import LstmScorer, LstmTraining
from ..segmentation.model_bundle import DEFAULT_MODELS
from ..validation.calibration import CROSS_FITTED, calibration_summary, cross_fitted_probabilities
from ..validation.conformal import DEFAULT_COVERAGE, ClassConditionalConformal, repeated_split_coverage
from ..validation.delong import delong_test
from ..validation.metrics import metrics_with_ci
from ..validation.report import EvaluationResult, write_report
from ..validation.splits import check_split_plan, repeated_kfold
from .stacking import Component, NestedFusion, YoungerIsMutant, final_stacker, nested_fusion

ProgressFactory = Callable[[str], Callable[[int, int], None]]
FULL, WITHOUT_DSC = "Fusion: DLR + perfusion + age", "Fusion: DLR + age (no DSC)"


@dataclass
class FusionSettings:
    """What ``idh-predictor fusion`` evaluates and how."""

    model: Path = DEFAULT_MODELS / "segmentation-flair-t1ce"  # the DLR filter bank
    folds: int = 5
    inner_folds: int = 3
    coverage: float = DEFAULT_COVERAGE
    coverage_repeats: int = 200
    radiomics: bool = False
    seed: int = 0
    workers: int = 1
    training: LstmTraining = field(default_factory=LstmTraining)

    def as_dict(self) -> dict[str, object]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def _dlr_settings(settings: FusionSettings) -> DlrSettings:
    """The DLR component: ``idh-predictor dlr``'s defaults (k by inner CV, 64 GMM components) on
    the fusion's filter bank and seed, for its evaluation and its bundle alike."""
    return DlrSettings(model=settings.model, seed=settings.seed)


def _components(cohort_dir: Path, cases: list, settings: FusionSettings, stage: ProgressFactory) -> list[Component]:
    """The components on this cohort: DLR descriptors (cached beside the cohort), the LSTM's DSC
    windows, age, and radiomics features when asked for."""
    from ..dlr.cache import cohort_descriptors
    from ..dlr.descriptors import DescriptorOptions
    from ..dlr.model import dlr_pipeline, selection_classifier
    from ..perfusion.evaluate import analyse_cohort
    from ..segmentation.model_bundle import load_filter_bank

    folders = [c.folder for c in cases]
    cache_dir = Path(cohort_dir) / ".idhpredictor-cache"
    bank = load_filter_bank(settings.model)
    options = DescriptorOptions(seed=settings.seed)
    descriptors = cohort_descriptors(bank, settings.model, folders, ("conv6",), options, cache_dir,
                                     stage(f"deep descriptors ({'+'.join(bank.modalities)})"))["conv6"]
    windows = analyse_cohort(folders, stage("DSC analysis")).windows
    age = np.array([[c.age] for c in cases], dtype=float)
    seed, training = settings.seed, settings.training
    dlr = _dlr_settings(settings)
    components = [Component("DLR", lambda: dlr_pipeline(dlr.k, dlr.components, dlr.seed), descriptors),
                  Component("perfusion LSTM", lambda: LstmScorer(training), windows),
                  Component("age", YoungerIsMutant, age)]
    if settings.radiomics:
        from ..dlr.radiomics import cohort_radiomics

        _, features = cohort_radiomics(folders, tuple(bank.modalities), cache_dir, settings.workers, stage("radiomics features"))
        components.append(Component("radiomics", lambda: selection_classifier("auto", seed, impute=True), features))
    return components


def evaluate_fusion(cohort_dir: Path, out_dir: Path, settings: FusionSettings,
                    progress: ProgressFactory | None = None, save_model: Path | None = None) -> dict[str, object]:
    """Run the nested evaluation; write report.json (top-level ``auc``, ``brier``, ``ece``,
    ``coverage``, ``uncertain_fraction`` of the full fusion), table.md, roc.png and reliability.png."""
    if not 0.0 < settings.coverage < 1.0:
        raise InputError(None, f"--coverage {settings.coverage}: a coverage is a fraction strictly between 0 and 1",
                         "Give e.g. --coverage 0.9 for 90 %")
    stage = progress or (lambda _name: None)
    cases = read_cohort(cohort_dir)
    y = np.array([c.idh_mutant for c in cases], dtype=int)
    check_split_plan(y, Path(cohort_dir) / "clinical.csv", settings.folds)
    components = _components(Path(cohort_dir), cases, settings, stage)
    names = [c.name for c in components]
    input_sets = {FULL: tuple(n for n in names if n != "radiomics"), WITHOUT_DSC: ("DLR", "age")}
    if settings.radiomics:
        input_sets["Fusion: DLR + perfusion + age + radiomics"] = tuple(names)
    outer = repeated_kfold(y, settings.folds, 1, settings.seed)[0]
    fusion = nested_fusion(components, y, outer, input_sets, settings.inner_folds, settings.seed, settings.workers,
                           stage(f"nested stacking ({settings.folds} x {settings.inner_folds} folds)"))

    section = f"{settings.folds}-fold cross-validation (nested for the fusion)"
    results = []
    # each component as a user would see it: its Platt-scaled (cross-fitted) probability, called
    # mutant from 0.5 (a raw score's own threshold means nothing for age)
    shown = {name: cross_fitted_probabilities(scores, y, seed=settings.seed) for name, scores in fusion.component_scores.items()}
    for name, probabilities in shown.items():
        results.append(EvaluationResult(name, section, "cv", y, probabilities,
                                        metrics_with_ci(y, probabilities, threshold=0.5, seed=settings.seed),
                                        {"calibration": calibration_summary(y, probabilities, CROSS_FITTED)}))
    for name, probabilities in fusion.fused.items():
        result = EvaluationResult(name, section, "cv", y, probabilities,
                                  metrics_with_ci(y, probabilities, threshold=0.5, seed=settings.seed),
                                  {"inputs": list(input_sets[name]),
                                   "calibration": calibration_summary(y, probabilities, "stacker output (logistic regression)")})
        results.append(result)
    full = fusion.fused[FULL]
    comparisons = {name: delong_test(y, full, probabilities) for name, probabilities in shown.items()}
    conformal = repeated_split_coverage(full, y, settings.coverage, settings.coverage_repeats, settings.seed)
    next(r for r in results if r.name == FULL).extra.update({"delong_against": comparisons, "conformal": conformal})

    fused = next(r for r in results if r.name == FULL)
    summary = {"model": FULL, "inputs": list(input_sets[FULL]), "patients": int(len(y)), "mutant": int(y.sum()),
               "labels": "simulated (digital phantom)", "auc": fused.metrics["auc"],
               "brier": fused.extra["calibration"]["brier"], "ece": fused.extra["calibration"]["ece"],
               "coverage": {k: conformal[k]["mean"] for k in ("overall", "mutant", "wildtype")},
               "coverage_nominal": settings.coverage, "uncertain_fraction": conformal["uncertain_fraction"]["mean"]}
    notes = (f"\n## Prediction sets ({FULL})\n\nClass-conditional conformal sets at {settings.coverage:.0%} coverage, "
             f"over {settings.coverage_repeats} random halvings (calibrate on one half, measure on the other): "
             f"coverage wildtype {conformal['wildtype']['mean']:.3f} (sd {conformal['wildtype']['sd']:.3f}), "
             f"mutant {conformal['mutant']['mean']:.3f} (sd {conformal['mutant']['sd']:.3f}), "
             f"overall {conformal['overall']['mean']:.3f}; uncertain (both classes) "
             f"{conformal['uncertain_fraction']['mean']:.1%} of patients.\n")
    write_report(Path(out_dir), results, "IDH prediction by fusion (simulated patients)",
                 {**settings.as_dict(), "cohort": str(cohort_dir), "patients": len(y), "mutant": int(y.sum())}, summary, notes)
    if save_model is not None:
        _save_bundle(save_model, Path(cohort_dir), components, y, fusion, results, settings, stage)
    return {"results": results, **summary}


def _save_bundle(folder: Path, cohort_dir: Path, components: list[Component], y: np.ndarray, fusion: NestedFusion,
                 results: list[EvaluationResult], settings: FusionSettings, stage: ProgressFactory) -> Path:
    """The bundle ``predict --fusion-model`` uses: DLR and the LSTM refitted on every patient, one
    stacker per input set fitted on every patient's out-of-fold component scores, and its
    conformal thresholds from the out-of-fold fused probabilities (module ``bundle``)."""
    from ..dlr.descriptors import DescriptorOptions
    from ..dlr.evaluate import save_dlr_bundle
    from ..io.cohort import cohort_record
    from ..perfusion.model_bundle import save_perfusion_model
    from ..perfusion.training import train_lstm
    from ..validation.calibration import PlattCalibrator
    from .bundle import Stacker, save_fusion_model

    inputs = {c.name: c.X for c in components}
    by_name = {r.name: r for r in results}
    cohort = {**cohort_record(cohort_dir), "patients": int(len(y)), "mutant": int(y.sum())}
    stackers, validation = {}, {}
    for name, members in fusion.input_sets.items():
        scores = np.column_stack([fusion.component_scores[m] for m in members])
        conformal = ClassConditionalConformal(settings.coverage).fit(fusion.fused[name], y)
        stackers[name] = Stacker.from_pipeline(final_stacker(fusion.component_scores, y, members), members, conformal, scores)
        result = by_name[name]
        validation[name] = {"auc": result.metrics["auc"], "brier": result.extra["calibration"]["brier"],
                            "ece": result.extra["calibration"]["ece"], "patients": int(len(y)),
                            "labels": "simulated (digital phantom)", "masks": "reference (phantom truth)",
                            "validation": f"nested {settings.folds}-fold cross-validation"}
    lstm_oof_probability = expit(fusion.component_scores["perfusion LSTM"])
    calibrator = PlattCalibrator(on_logit=True).fit(lstm_oof_probability, y)
    network, history = train_lstm(inputs["perfusion LSTM"], y, settings.training, progress=stage("LSTM on every patient"))
    lstm_metrics = {"cv_simulated": {"Attention-LSTM": by_name["perfusion LSTM"].metrics}}
    lstm_calibration = {**calibrator.as_dict(), "fitted_on": f"out-of-fold outputs of the {len(y)} patients",
                        "cv_simulated": {k: by_name["perfusion LSTM"].extra["calibration"][k] for k in ("brier", "ece", "patients")}}
    dlr_settings = _dlr_settings(settings)
    return save_fusion_model(
        folder,
        lambda path: save_dlr_bundle(path, inputs["DLR"], y, fusion.component_scores["DLR"], dlr_settings,
                                     DescriptorOptions(seed=settings.seed), cohort_dir,
                                     {f"{settings.folds}-fold_simulated": by_name["DLR"].metrics}),
        lambda path: save_perfusion_model(path, network, {"training": settings.training.as_dict(), "history": history,
                                                          "calibration": lstm_calibration, "training_cohort": cohort,
                                                          "metrics": lstm_metrics}),
        stackers, {"training_cohort": cohort, "validation": validation, "coverage": settings.coverage,
                   "components": {"DLR": "SVM decision value", "perfusion LSTM": "logit of the mean window probability",
                                  "age": "minus the age in years"}})
