"""``idh-predictor demo``: the whole pipeline on a fresh phantom cohort, measured, in one report.

Stages: simulate a cohort; segment part of it with the shipped CNN (Dice against the phantom's
labels); DLR by LOOCV and by the temporal split (multi- and single-modality, radiomics baseline),
the layer comparison, the DLR label-permutation test (20 shuffles); perfusion (5-fold CV,
held-out test, baselines, temporal patterns) and its label-permutation test (20 shuffles; 5 in
``--quick``); one new patient end to end with the shipped bundles. Every number and figure in ``report.html`` comes from this run.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .io.atomic import atomic_path
from .validation.permutation import DEFAULT_SHUFFLES

ProgressFactory = Callable[[str], Callable[[int, int], None]]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs. ``quick`` trades cohort size, LOOCV and the slow extras for a first try."""

    cases: int = 48                 # small (2.5 mm) cohort for the DLR and perfusion evaluations
    full_size_cases: int = 3        # BraTS-size (1 mm) patients for segmentation Dice; the first is the "new patient"
    full_size: str = "full"         # their phantom size ("small" only to keep the test suite fast)
    seed: int = 0
    validation: str = "loocv"       # DLR: the paper's LOOCV; "kfold" (5-fold) in --quick
    dlr_k: int | str = "auto"       # DLR features kept: chosen by inner CV; fixed at 32 in --quick
    compare_layers: bool = True
    single_modality: bool = True    # DLR on FLAIR alone beside FLAIR+T1c (paper Table 2a)
    radiomics: bool = True
    lstm_epochs: int = 150
    perfusion_shuffles: int = DEFAULT_SHUFFLES  # the LSTM is retrained per shuffle: the quick demo affords 5
    workers: int = 2
    mutant_fraction: float | None = None  # None: the Choi mix's prevalence (27 %)

    def __post_init__(self) -> None:
        if self.perfusion_shuffles < 1:
            raise ValueError("the demo's perfusion permutation test needs at least one shuffle")

    @classmethod
    def quick(cls, cases: int | None = None, workers: int = 2, seed: int = 0) -> DemoSettings:
        """A first try in about 4 minutes on 2 cores: 24 patients, half IDH-mutant, so that each
        class has the ``MIN_CLASS_FOR_CI`` patients an interval needs (at the Choi prevalence that
        takes ~40 patients, and the time); 5-fold CV; DLR keeps 32 features instead of choosing
        k by inner CV (the grid search was half the DLR stage, mostly in its 20-shuffle
        permutation test); no radiomics baseline; 5 perfusion shuffles."""
        return cls(cases=cases or 24, full_size_cases=1, validation="kfold", dlr_k=32, compare_layers=False,
                   single_modality=False, radiomics=False, lstm_epochs=40, perfusion_shuffles=5, workers=workers,
                   seed=seed, mutant_fraction=0.5)


class StageClock:
    """Wall time of each stage, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, work: Callable[[], object]) -> object:
        start = time.perf_counter()
        result = work()
        self.seconds[name] = round(time.perf_counter() - start, 2)
        return result


def machine_description() -> dict[str, object]:
    """What the timings were measured on."""
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _segmentation_stage(cohort: Path, out: Path, progress: Callable[[int, int], None]) -> tuple[dict, sitk.Image]:
    """Segment every (full-size) case with the shipped default CNN; Dice per region; overlay of
    the first, whose predicted labels are returned for the end-to-end prediction."""
    from .io.case import read_case
    from .io.cohort import case_folders
    from .segmentation.evaluation import region_metrics
    from .segmentation.figures import overlay_figure
    from .segmentation.inference import segment_case
    from .segmentation.model_bundle import default_bundle_for, find_case_roles, load_model

    folders = case_folders(cohort)
    bundle = default_bundle_for(find_case_roles(folders[0]))
    model = load_model(bundle)
    rows, first = [], None
    for done, folder in enumerate(folders, start=1):
        case = read_case(folder, model.modalities, dsc=False)
        started = time.perf_counter()
        labels = segment_case(model.network, model.modalities, case, min_enhancing_ml=model.min_enhancing_ml)
        seconds = time.perf_counter() - started
        predicted, truth = sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(case.labels)
        metrics = region_metrics(predicted, truth)
        rows.append({"case_id": case.case_id, "seconds": round(seconds, 2),
                     **{region: round(values["dice"], 4) for region, values in metrics.items()}})
        if first is None:
            first = labels
            flair = sitk.GetArrayFromImage(case.images.get("flair", case.reference))
            overlay_figure(flair, predicted, truth, out / "segmentation-overlay.png",
                           f"{case.case_id}: {bundle.name} (prediction) vs phantom labels")
        progress(done, len(folders))
    regions = [key for key in rows[0] if key not in ("case_id", "seconds")]
    summary = {region: {"mean": float(np.mean([r[region] for r in rows])), "sd": float(np.std([r[region] for r in rows]))}
               for region in regions}
    return {"model": bundle.name, "cases": rows, "dice": summary, "overlay": "segmentation-overlay.png"}, first


def _new_patient(cohort: Path, labels: sitk.Image, out: Path, progress: ProgressFactory) -> dict:
    """The first full-size patient (never trained on) end to end with the shipped bundles, its
    CNN segmentation as the mask for DLR, perfusion and the fused answer with its prediction set."""
    from .dlr.predict import predict_dlr_case
    from .fusion.bundle import DEFAULT_FUSION_MODEL, DLR_PART, PERFUSION_PART, fuse, fusion_cautions
    from .io.case import read_case
    from .io.cohort import case_folders, read_clinical
    from .perfusion.model_bundle import predict_perfusion_series
    from .perfusion.patterns import attention_heatmap
    from .quality import QualityReport

    folder = case_folders(cohort)[0]
    case = read_case(folder)
    clinical = read_clinical(cohort / "clinical.csv")[case.case_id]
    dlr = predict_dlr_case(case, labels, progress=progress("new patient: deep descriptors"), mask_source="CNN segmentation")
    perfusion = predict_perfusion_series(case.dsc, labels, case.reference, case.case_id)
    # the fused answer comes from the fusion bundle's own components (trained with its stackers)
    fusion_dlr = predict_dlr_case(case, labels, DEFAULT_FUSION_MODEL / DLR_PART, progress=progress("new patient: fusion's DLR"),
                                  mask_source="CNN segmentation")
    fusion_perfusion = predict_perfusion_series(case.dsc, labels, case.reference, case.case_id,
                                                DEFAULT_FUSION_MODEL / PERFUSION_PART)
    fused = fuse(fusion_dlr, fusion_perfusion.result, float(clinical["age"]),
                 cautions=fusion_cautions(QualityReport(), fusion_perfusion.result))
    curves = perfusion.curves
    attention_heatmap(curves.curves, perfusion.attention, curves.grid_s, out / "new-patient-attention.png",
                      f"{case.case_id}: {perfusion.result['temporal_pattern']}", curves.present)
    return {"case_id": case.case_id, "truth_idh": clinical["idh"],
            "dlr": {k: dlr[k] for k in ("idh_mutant_probability", "predicted_class", "top_features")},
            "perfusion": {k: perfusion.result[k] for k in ("idh_mutant_probability", "predicted_class", "temporal_pattern", "rcbv",
                                                           "dsc_quality")},
            "fusion": {k: fused[k] for k in ("idh_mutant_probability", "predicted_class", "prediction_set", "coverage",
                                             "inputs_used", "validation", "deployment_validation", "guarantee")},
            "heatmap": "new-patient-attention.png"}


def run_demo(out: str | Path, settings: DemoSettings, progress: ProgressFactory, command: str = "") -> Path:
    """Run every stage into ``out`` and write ``demo.json`` and ``report.html``; return the HTML path."""
    from .demo_report import write_html
    from .dlr.evaluate import DlrSettings, evaluate_dlr
    from .perfusion.evaluate import PerfusionSettings, evaluate_perfusion
    from .perfusion.training import LstmTraining
    from .phantom.cohort import PhantomOptions, generate_cohort
    from .validation.report import EvaluationResult

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notes = []
    if settings.radiomics and importlib.util.find_spec("radiomics") is None:
        notes.append("Radiomics baseline skipped: pyradiomics is not installed (pip install pyradiomics-bhklab, "
                     "or pip install -e '.[radiomics]').")
        log.warning(notes[-1])
        settings = replace(settings, radiomics=False)
    clock = StageClock()
    cohort, full = out / "cohort", out / "full-size"
    options = PhantomOptions(cases=settings.cases, seed=settings.seed, size="small", mix="choi",
                             mutant_fraction=settings.mutant_fraction)
    clock.run("phantom cohort (small)", lambda: generate_cohort(cohort, options, progress("phantom patients"), settings.workers))
    full_options = PhantomOptions(cases=settings.full_size_cases, seed=settings.seed + 100_000, size=settings.full_size,
                                  mix="choi")
    clock.run("phantom patients (full size)", lambda: generate_cohort(full, full_options, progress("full-size patients"),
                                                                     settings.workers))
    segmentation, first_labels = clock.run("segmentation + Dice (full size)", lambda: _segmentation_stage(
        full, out, progress("segmentation")))

    dlr = DlrSettings(workers=settings.workers, radiomics=settings.radiomics, seed=settings.seed,
                      validation=settings.validation, repeats=1, k=settings.dlr_k)
    if not settings.single_modality:
        dlr = replace(dlr, single_modality_model=None)
    reports: dict[str, list[EvaluationResult]] = {}
    stage = f"DLR {settings.validation} ({'+ radiomics, ' if settings.radiomics else ''}permutation test)"
    reports["dlr_main"] = clock.run(stage, lambda: evaluate_dlr(
        cohort, out / "dlr-main", replace(dlr, permutation_shuffles=DEFAULT_SHUFFLES), progress))
    reports["dlr_temporal"] = clock.run("DLR temporal split", lambda: evaluate_dlr(
        cohort, out / "dlr-temporal", replace(dlr, validation="temporal"), progress))
    if settings.compare_layers:
        reports["dlr_layers"] = clock.run("DLR layer comparison (5-fold)", lambda: evaluate_dlr(
            cohort, out / "dlr-layers", replace(dlr, validation="kfold", compare_layers=True, radiomics=False,
                                                single_modality_model=None), progress))
    perfusion = PerfusionSettings(seed=settings.seed, workers=settings.workers, permutation_shuffles=settings.perfusion_shuffles,
                                  training=LstmTraining(epochs=settings.lstm_epochs))
    perfusion_summary = clock.run(f"perfusion 5-fold CV + test (permutation test, {settings.perfusion_shuffles} shuffles)",
                                  lambda: evaluate_perfusion(cohort, out / "perfusion", perfusion, progress))
    new_patient = clock.run("new patient end to end", lambda: _new_patient(full, first_labels, out, progress))

    record = {
        "title": "IDHPredictor demo on a simulated (phantom) cohort", "notes": notes,
        "command": command, "settings": asdict(settings), "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cohort": {"patients": settings.cases, "size": "small (2.5 mm)", "mix": "choi (grades II-IV)"
                   + ("" if settings.mutant_fraction is None else ", balanced case-control sample: PPV and NPV "
                      "would be lower at the real prevalence"),
                   "mutant": int(reports["dlr_main"][0].y_true.sum()), "full_size_patients": settings.full_size_cases},
        "segmentation": segmentation,
        "dlr": {name: [r.as_dict() for r in results] for name, results in reports.items()},
        "perfusion": {"results": [r.as_dict() for r in perfusion_summary["results"]],
                      "delong": perfusion_summary["delong"], "patterns": perfusion_summary["patterns"],
                      "patterns_by_summed_attention": perfusion_summary["patterns_by_summed_attention"]},
        "new_patient": new_patient,
        "timings_s": {**clock.seconds, "total": round(sum(clock.seconds.values()), 1)},
    }
    with atomic_path(out / "demo.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return write_html(out, record)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
