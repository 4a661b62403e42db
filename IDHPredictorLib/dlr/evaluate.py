"""Cohort evaluation of DLR (Li et al. 2017, Tables 2 and 3): multi- and single-modality DLR, the
radiomics baseline and the layer comparison, all on the same patient-level splits, with every
fitted step (GMM, selectors, scaler, SVM) inside the training fold."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.cohort import cohort_record, read_cohort
from ..segmentation.model_bundle import DEFAULT_MODELS, load_filter_bank
from ..segmentation.network import LAYERS
from ..validation.calibration import CROSS_FITTED, calibration_summary, cross_fitted_probabilities
from ..validation.crossval import out_of_fold_scores
from ..validation.metrics import metrics_with_ci
from ..validation.report import EvaluationResult, write_report
from ..validation.splits import Split, check_split_plan, leave_one_out, repeated_kfold, temporal
from .cache import cohort_descriptors, model_key
from .descriptors import DescriptorOptions
from .model import DlrModel, dlr_pipeline, selection_classifier

log = logging.getLogger(__name__)

ProgressFactory = Callable[[str], Callable[[int, int], None]]
VALIDATIONS = ("loocv", "temporal", "kfold")


@dataclass
class DlrSettings:
    """What ``idh-predictor dlr`` evaluates and how."""

    model: Path = DEFAULT_MODELS / "segmentation-flair-t1ce"
    single_modality_model: Path | None = DEFAULT_MODELS / "segmentation-flair"
    layer: str = "conv6"
    validation: str = "loocv"
    split_date: dt.date = dt.date(2015, 1, 1)
    folds: int = 5
    repeats: int = 5
    k: int | str = "auto"
    components: int = 64
    radiomics: bool = True
    compare_layers: bool = False
    permute_labels: bool = False
    permutation_shuffles: int = 0
    seed: int = 0
    cache_dir: Path | None = None
    workers: int = 1

    def as_dict(self) -> dict[str, object]:
        return {key: str(value) if isinstance(value, (Path, dt.date)) else value for key, value in asdict(self).items()}


def make_splits(settings: DlrSettings, y: np.ndarray, dates: list[dt.date]) -> list[list[Split]]:
    """One list of splits per repetition (LOOCV and temporal have one)."""
    if settings.validation == "loocv":
        return [leave_one_out(len(y))]
    if settings.validation == "temporal":
        return [temporal(dates, settings.split_date)]
    if settings.validation == "kfold":
        return repeated_kfold(y, settings.folds, settings.repeats, settings.seed)
    raise ValueError(f"unknown validation {settings.validation!r}; choose from {', '.join(VALIDATIONS)}")


def _scores(make_model: Callable[[], object], X: list | np.ndarray, y: np.ndarray, repetitions: list[list[Split]],
            progress: Callable[[int, int], None] | None, workers: int = 1) -> np.ndarray:
    """Out-of-fold scores, averaged over repetitions of k-fold (each repetition tests everyone once)."""
    total = sum(len(r) for r in repetitions)
    runs = []
    for index, splits in enumerate(repetitions):
        offset = sum(len(r) for r in repetitions[:index])
        runs.append(out_of_fold_scores(make_model, X, y, splits,
                                       (lambda d, _t, o=offset: progress(o + d, total)) if progress else None, workers))
    return np.mean(runs, axis=0)


def _result(name: str, section: str, settings: DlrSettings, y: np.ndarray, scores: np.ndarray, **extra) -> EvaluationResult:
    tested = np.isfinite(scores)
    metrics = metrics_with_ci(y[tested], scores[tested], seed=settings.seed)
    # the probability a user sees: Platt scaling of the SVM decision, cross-fitted over patients
    probabilities = cross_fitted_probabilities(scores[tested], y[tested], seed=settings.seed)
    if probabilities is not None:
        extra["calibration"] = calibration_summary(y[tested], probabilities, CROSS_FITTED)
    return EvaluationResult(name, section, settings.validation, y[tested], scores[tested], metrics, extra)


def evaluate_dlr(cohort_dir: Path, out_dir: Path, settings: DlrSettings,
                 progress: ProgressFactory | None = None, save_model: Path | None = None) -> list[EvaluationResult]:
    """Run the evaluation the settings ask for; write report.json, table.md and roc.png to ``out_dir``."""
    if save_model is not None and settings.permute_labels:
        raise InputError(save_model, "a model trained on permuted labels would be meaningless", "Drop --save-model or --permute-labels")
    cases = read_cohort(cohort_dir)
    folders = [c.folder for c in cases]
    y = np.array([c.idh_mutant for c in cases], dtype=int)
    if settings.permutation_shuffles < 0:
        raise InputError(None, f"--permutation-test {settings.permutation_shuffles}: the number of shuffles cannot be negative",
                         "Give 20 or more shuffles, or leave the option out")
    uses_folds = settings.validation == "kfold" or settings.permutation_shuffles > 0
    check_split_plan(y, Path(cohort_dir) / "clinical.csv", settings.folds if uses_folds else None)
    if settings.permute_labels:
        y = np.random.default_rng(settings.seed).permutation(y)
    try:
        repetitions = make_splits(settings, y, [c.diagnosis_date for c in cases])
    except ValueError as error:
        raise InputError(Path(cohort_dir) / "clinical.csv", str(error), "Check the split settings against the cohort") from error
    cache_dir = settings.cache_dir or Path(cohort_dir) / ".idhpredictor-cache"
    options = DescriptorOptions(seed=settings.seed)
    stage = progress or (lambda _name: None)
    results = []

    model = load_filter_bank(settings.model)
    layers = LAYERS if settings.compare_layers else (settings.layer,)
    descriptors = cohort_descriptors(model, settings.model, folders, layers, options, cache_dir,
                                     stage(f"deep descriptors ({'+'.join(model.modalities)})"))
    section = f"DLR, {settings.validation}"
    multi_name = f"DLR {'+'.join(model.modalities)} ({settings.layer})"
    multi_scores, multi_result = None, None
    for layer in layers:
        scores = _scores(lambda: dlr_pipeline(settings.k, settings.components, settings.seed), descriptors[layer], y, repetitions,
                         stage(f"DLR {layer} {settings.validation}"), settings.workers)
        name = multi_name if layer == settings.layer else f"DLR {'+'.join(model.modalities)} ({layer})"
        results.append(_result(name, "Layer comparison" if settings.compare_layers else section, settings, y, scores,
                               layer=layer, modalities=list(model.modalities)))
        if layer == settings.layer:
            multi_scores, multi_result = scores, results[-1]
    if settings.permutation_shuffles:
        from .permutation import permutation_test

        multi_result.extra["permutation_test"] = permutation_test(
            descriptors[settings.layer], y, settings.permutation_shuffles, settings.folds, settings.k, settings.components,
            settings.seed, stage(f"permutation test ({settings.permutation_shuffles} shuffles, {settings.folds}-fold)"),
            settings.workers)
    if settings.single_modality_model is not None:
        single = load_filter_bank(settings.single_modality_model)
        single_descriptors = cohort_descriptors(single, settings.single_modality_model, folders, (settings.layer,),
                                                options, cache_dir, stage(f"deep descriptors ({'+'.join(single.modalities)})"))
        scores = _scores(lambda: dlr_pipeline(settings.k, settings.components, settings.seed), single_descriptors[settings.layer], y,
                         repetitions, stage(f"DLR single modality {settings.validation}"), settings.workers)
        results.append(_result(f"DLR {'+'.join(single.modalities)} ({settings.layer})", section, settings, y, scores,
                               layer=settings.layer, modalities=list(single.modalities)))
    if settings.radiomics:
        from .radiomics import cohort_radiomics

        # the paper's Table 2a: radiomics against single-modality DLR on the same masks
        modalities = tuple(single.modalities) if settings.single_modality_model else tuple(model.modalities)
        names, features = cohort_radiomics(folders, modalities, cache_dir, settings.workers,
                                           stage(f"radiomics features ({'+'.join(modalities)})"))
        scores = _scores(lambda: selection_classifier(settings.k, settings.seed, impute=True), features, y,
                         repetitions, stage(f"radiomics {'+'.join(modalities)} {settings.validation}"))
        results.append(_result(f"Radiomics {'+'.join(modalities)} ({len(names)} features)", section, settings, y,
                               scores, modalities=list(modalities)))
    title = "IDH prediction by DLR" + (" (labels permuted: leakage check)" if settings.permute_labels else "")
    write_report(out_dir, results, title, {**settings.as_dict(), "cohort": str(cohort_dir), "patients": len(cases),
                                           "descriptor_options": options.as_dict()})
    if save_model is not None:
        save_dlr_bundle(save_model, descriptors[settings.layer], y, multi_scores, settings, options, cohort_dir,
                        {f"{settings.validation}_simulated": multi_result.metrics})
    return results


def save_dlr_bundle(folder: Path, descriptors: list[np.ndarray], y: np.ndarray, oof_scores: np.ndarray,
                    settings: DlrSettings, options: DescriptorOptions, cohort_dir: Path, metrics: dict) -> Path:
    """Fit the DLR pipeline on every patient and write it as a bundle, Platt-scaled on the
    out-of-fold scores ``oof_scores``, with the record ``predict`` needs to reproduce its descriptors."""
    model = load_filter_bank(settings.model)
    pipeline = dlr_pipeline(settings.k, settings.components, settings.seed).fit(descriptors, y)
    record = {"segmentation_model": Path(settings.model).name, "modalities": list(model.modalities),
              "segmentation_key": model_key(model, settings.model, options),
              "layer": settings.layer, "descriptor_options": options.as_dict(),
              "training_cohort": {**cohort_record(cohort_dir), "patients": len(y), "mutant": int(np.sum(y))},
              "metrics": metrics, "note": "Trained on simulated patients (digital phantom); for research, not diagnosis."}
    return DlrModel.from_pipeline(pipeline, oof_scores, y, settings.layer, record).save(folder)
