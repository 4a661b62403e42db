"""Deployment-mode validation: the DLR and fusion bundles applied, unchanged, to a held-out labelled
cohort twice, inside each case's reference mask and inside the mask the CNN draws (what ``predict``
and the Slicer module use when the case has none), so that every validation figure a user is shown
can say which masks it holds for.

The bundles were trained and cross-validated on reference masks; only the test side changes here,
exactly as in deployment. Each case's CNN mask is written under ``<out>/cnn-masks-<network key>/``
and reused by a rerun; the deep descriptors of one mask are computed once and scored by every DLR
bundle built on the same network.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..dlr.model import DlrModel
from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.case import Case, find_case_files, read_case, read_label_map
from ..io.cohort import CohortCase, read_cohort
from ..io.images import labels_on_grid, write_image
from ..segmentation.model_bundle import SegmentationModel
from ..validation.calibration import calibration_summary
from ..validation.conformal import coverage_report
from ..validation.delong import delong_test
from ..validation.metrics import metrics_with_ci
from ..validation.report import EvaluationResult, write_report
from .bundle import DLR_PART, PERFUSION_PART, Stacker, component_scores, fused_answer, load_fusion_model

log = logging.getLogger(__name__)

REFERENCE, CNN = "reference", "CNN"
FUSION_DLR = "DLR (fusion's own)"
MASK_SOURCES = (REFERENCE, CNN)
LABELS = "simulated (digital phantom)"
BUNDLE_PROBABILITY = "the bundle's own calibrated probability (nothing refitted on this cohort)"
Progress = Callable[[int, int], None]


@dataclass
class DlrBundleUnderTest:
    """A DLR bundle and the network its descriptors come from."""

    name: str
    folder: Path
    model: DlrModel
    network: SegmentationModel
    network_folder: Path

    @property
    def descriptor_key(self) -> tuple[str, str]:
        """Bundles with the same key score the same descriptors (network weights + sampling, layer)."""
        return self.model.record["segmentation_key"], self.model.record["layer"]


def _dlr_under_test(name: str, folder: Path) -> DlrBundleUnderTest:
    from ..dlr.predict import load_dlr_predictor

    model, network, network_folder = load_dlr_predictor(folder)
    return DlrBundleUnderTest(name, Path(folder), model, network, network_folder)


def cnn_mask(bundle: DlrBundleUnderTest, case: CohortCase, mask_dir: Path) -> tuple[sitk.Image | None, str]:
    """The CNN's labels for ``case`` on its own grid (read back from ``mask_dir`` when a previous run
    wrote them), or None and the quality-control refusal, which is the deployed tool's answer."""
    from ..preprocessing.prepare import prepare_case_folder
    from ..segmentation.inference import segment_prepared

    path = mask_dir / f"{case.case_id}_seg.nii.gz"
    if path.exists():
        return read_label_map(path), "pass"
    try:
        segmentation = segment_prepared(bundle.network, prepare_case_folder(case.folder, bundle.network.modalities))
    except InputError as refusal:
        return None, f"refused: {refusal}"
    write_image(segmentation.labels, path)
    return segmentation.labels, "; ".join(c.line() for c in segmentation.quality.problems()) or "pass"


def _descriptors(bundle: DlrBundleUnderTest, images: Case, mask: sitk.Image) -> np.ndarray:
    from ..dlr.descriptors import deep_descriptors
    from ..dlr.predict import descriptor_options

    layer = bundle.model.record["layer"]
    return deep_descriptors(bundle.network.network, bundle.network.modalities, images, mask, (layer,),
                            descriptor_options(bundle.model.record))[layer]


def _lstm_output(perfusion_bundle: Path, case: CohortCase, mask: sitk.Image) -> float | None:
    """The fusion's LSTM output for ``case`` inside ``mask``, or None when the case has no DSC series."""
    from ..perfusion.model_bundle import predict_perfusion

    if "dsc" not in find_case_files(case.folder)[1]:
        return None
    return predict_perfusion(case.folder, perfusion_bundle, labels=mask)["network_output"]


def case_rows(case: CohortCase, fusion_bundle: Path, fusion: tuple[dict[str, Stacker], dict],
              dlr_bundles: list[DlrBundleUnderTest], mask_dir: Path) -> list[dict]:
    """One row per mask source: every bundle's answer for ``case`` inside that mask (``fusion``:
    the fusion bundle's stackers and record, read once)."""
    from ..segmentation.evaluation import region_metrics

    images = read_case(case.folder, dlr_bundles[0].network.modalities, labels=True, dsc=False)
    reference = images.labels
    cnn_labels, quality = cnn_mask(dlr_bundles[0], case, mask_dir)
    masks = {REFERENCE: (reference, "pass"), CNN: (cnn_labels, quality)}
    rows = []
    for source, (mask, verdict) in masks.items():
        row: dict[str, object] = {"case_id": case.case_id, "idh_mutant": int(case.idh_mutant), "age": case.age,
                                  "masks": source, "quality": verdict}
        if mask is not None:
            row["whole_tumour_dice"] = round(region_metrics(sitk.GetArrayFromImage(labels_on_grid(mask, reference)),
                                                            sitk.GetArrayFromImage(reference))["whole_tumour"]["dice"], 4)
            try:
                row.update(_answers_inside(mask, case, images, fusion_bundle, fusion, dlr_bundles))
            except InputError as refusal:
                if source == REFERENCE:  # a labelled cohort's own mask that cannot be read is the cohort's fault
                    raise
                row["quality"] = f"refused: {refusal}"  # e.g. the CNN found no tumour: predict refuses too
        rows.append(row)
    return rows


def _answers_inside(mask: sitk.Image, case: CohortCase, images: Case, fusion_bundle: Path,
                    fusion: tuple[dict[str, Stacker], dict], dlr_bundles: list[DlrBundleUnderTest]) -> dict[str, object]:
    """Every bundle's decision and probability for ``case`` inside ``mask``; raises InputError where
    the deployed tool would refuse (an empty mask)."""
    stackers, record = fusion
    answers: dict[str, object] = {}
    descriptors: dict[tuple[str, str], np.ndarray] = {}
    for bundle in dlr_bundles:
        if bundle.descriptor_key not in descriptors:
            descriptors[bundle.descriptor_key] = _descriptors(bundle, images, mask)
        prediction = bundle.model.predict(descriptors[bundle.descriptor_key])
        answers[f"{bundle.name} decision"], answers[f"{bundle.name} probability"] = prediction.decision, prediction.probability
    lstm = _lstm_output(fusion_bundle / PERFUSION_PART, case, mask)
    answers["perfusion LSTM output"] = lstm
    for with_dsc in (True, False):
        scores = component_scores({"decision_value": answers[f"{FUSION_DLR} decision"]},
                                  {"network_output": lstm} if with_dsc and lstm is not None else None, case.age)
        answer = fused_answer(stackers, record, scores, [])
        answers[f"{answer['stacker']} probability"] = answer["idh_mutant_probability"]
    return answers


def _results(rows: list[dict], stackers: dict[str, Stacker], models: list[str], seed: int) -> tuple[list[EvaluationResult], dict]:
    """Metrics of every model on each mask source, over the cases answered on both; DeLong of CNN
    against reference masks, paired; fused coverage of the bundle's prediction sets."""
    by_case: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_case.setdefault(row["case_id"], {})[row["masks"]] = row
    answered = [c for c, pair in by_case.items() if all(f"{models[0]} probability" in pair.get(s, {}) for s in MASK_SOURCES)]
    refused = sorted(set(by_case) - set(answered))
    if len({by_case[c][REFERENCE]["idh_mutant"] for c in answered}) < 2:  # no AUC, no DeLong
        raise InputError(None, f"{len(answered)} patients answered on both mask sources, not both genotypes among them "
                         f"(refused on the CNN path: {', '.join(refused) or 'none'})",
                         "Validate on a held-out cohort with IDH-mutant and wildtype patients whose tumours the CNN finds")
    results, summary = [], {}
    for model in models:
        y = np.array([by_case[c][REFERENCE]["idh_mutant"] for c in answered])
        probabilities = {s: np.array([by_case[c][s][f"{model} probability"] for c in answered]) for s in MASK_SOURCES}
        entry = {}
        for source in MASK_SOURCES:
            result = EvaluationResult(f"{model}, {source} masks", f"{source} masks", "held-out", y, probabilities[source],
                                      metrics_with_ci(y, probabilities[source], threshold=0.5, seed=seed),
                                      {"calibration": calibration_summary(y, probabilities[source], BUNDLE_PROBABILITY),
                                       "masks": source})
            figure = {"auc": result.metrics["auc"], "brier": result.extra["calibration"]["brier"],
                      "ece": result.extra["calibration"]["ece"]}
            if model in stackers:
                sets = stackers[model].conformal.predict_sets(probabilities[source])
                coverage = coverage_report(sets, y)
                result.extra["conformal"] = coverage
                figure.update(coverage=coverage["coverage"], uncertain_fraction=coverage["uncertain_fraction"])
            results.append(result)
            entry[source] = figure
        entry["delong_cnn_vs_reference"] = delong_test(y, probabilities[CNN], probabilities[REFERENCE])
        summary[model] = entry
    dice = [by_case[c][CNN]["whole_tumour_dice"] for c in answered]
    return results, {"patients": len(answered), "mutant": int(sum(by_case[c][REFERENCE]["idh_mutant"] for c in answered)),
                     "refused_on_cnn_masks": refused, "labels": LABELS,
                     "cnn_whole_tumour_dice": {"mean": float(np.mean(dice)), "min": float(np.min(dice))} if dice else None,
                     "models": summary}


def validate_deployment(cohort_dir: Path, out_dir: Path, fusion_bundle: Path, dlr_bundle: Path | None = None,
                        progress: Progress | None = None, seed: int = 0) -> dict:
    """Apply the fusion bundle (and a stand-alone DLR bundle) to every case of a labelled held-out
    cohort on its reference masks and on the CNN's masks; write per_case.csv, report.json
    (per model and mask source: AUC with CI, Brier, ECE, and for the fusion the coverage of its
    prediction sets), table.md, roc.png, reliability.png. Returns the summary."""
    cases = read_cohort(cohort_dir)
    missing = [c.case_id for c in cases if "seg" not in find_case_files(c.folder)[1]]
    if missing:
        raise InputError(cohort_dir, f"cases without a reference mask: {', '.join(missing[:5])}",
                         "Deployment-mode validation compares against each case's <id>_seg label map")
    dlr_bundles = [_dlr_under_test(FUSION_DLR, Path(fusion_bundle) / DLR_PART)]
    if dlr_bundle is not None:
        dlr_bundles.append(_dlr_under_test(f"DLR ({Path(dlr_bundle).name})", Path(dlr_bundle)))
    fusion = load_fusion_model(fusion_bundle)
    mask_dir = Path(out_dir) / f"cnn-masks-{dlr_bundles[0].model.record['segmentation_key'][:12]}"
    mask_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for done, case in enumerate(cases):
        rows.extend(case_rows(case, Path(fusion_bundle), fusion, dlr_bundles, mask_dir))
        if progress:
            progress(done + 1, len(cases))
    models = [b.name for b in dlr_bundles] + list(fusion[0])
    results, summary = _results(rows, fusion[0], models, seed)
    summary.update(cohort=str(cohort_dir), fusion_bundle=str(fusion_bundle), dlr_bundle=str(dlr_bundle) if dlr_bundle else None,
                   segmentation=dlr_bundles[0].network_folder.name)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(Path(out_dir) / "per_case.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    notes = (f"\nHeld-out cohort, {summary['patients']} {LABELS} patients; the bundles are applied unchanged. CNN masks by "
             f"{summary['segmentation']}"
             + (f" (whole-tumour Dice against the reference: mean {summary['cnn_whole_tumour_dice']['mean']:.3f}, "
                f"min {summary['cnn_whole_tumour_dice']['min']:.3f})" if summary["cnn_whole_tumour_dice"] else "")
             + (f"; refused by quality control on the CNN path: {', '.join(summary['refused_on_cnn_masks'])} (left out of both columns)"
                if summary["refused_on_cnn_masks"] else "") + ".\n")
    write_report(Path(out_dir), results, "Deployment-mode validation: reference against CNN masks (simulated patients)",
                 {"cohort": str(cohort_dir), "seed": seed}, summary, notes)
    return summary


def _figure(entry: dict, summary: dict, source: str) -> dict:
    masks = f"CNN ({summary['segmentation']})" if source == CNN else "reference (phantom truth)"
    return {**entry[source], "patients": summary["patients"], "labels": summary["labels"], "masks": masks,
            "validation": f"held-out cohort ({Path(summary['cohort']).name}), bundle applied unchanged"}


def record_deployment_validation(summary: dict, fusion_bundle: Path, dlr_bundle: Path | None = None) -> None:
    """Store the figures beside the bundles' cross-validated ones: the fusion's model.json gains
    ``deployment_validation[model][masks]``; a stand-alone DLR bundle's ``metrics`` gain
    ``held_out_simulated_<masks>_masks``. The sub-bundles are left as they are (they are checksummed)."""
    from ..bundle import update_bundle_metrics, update_bundle_record

    models = summary["models"]
    figures = {model: {source: _figure(entry, summary, source) for source in MASK_SOURCES} for model, entry in models.items()}
    update_bundle_record(fusion_bundle, lambda record: record.__setitem__(
        "deployment_validation", {m: f for m, f in figures.items() if m == FUSION_DLR or not m.startswith("DLR (")}))
    if dlr_bundle is not None:
        name = f"DLR ({Path(dlr_bundle).name})"
        for source in MASK_SOURCES:
            update_bundle_metrics(dlr_bundle, f"held_out_simulated_{source.lower()}_masks", figures[name][source])
