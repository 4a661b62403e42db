"""IDH prediction for one case with a saved DLR bundle (segmenting first when the case has no mask)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..catalog import default_model
from ..errors import InputError
from ..io.case import Case
from ..io.images import write_image
from ..preprocessing.prepare import PreprocessMode, prepare_case_folder
from ..segmentation.checks import check_tumour
from ..segmentation.data import axial_case
from ..segmentation.inference import checked_network_input, segment_prepared
from ..segmentation.model_bundle import DEFAULT_MODELS, SegmentationModel, load_filter_bank
from .cache import model_key
from .descriptors import DescriptorOptions, deep_descriptors
from .model import DlrModel

log = logging.getLogger(__name__)
DEFAULT_DLR_MODEL = default_model("dlr")  # catalog.json names it


def load_dlr_predictor(dlr_bundle: str | Path = DEFAULT_DLR_MODEL,
                       models_dir: Path = DEFAULT_MODELS) -> tuple[DlrModel, SegmentationModel, Path]:
    """The DLR bundle and the segmentation network it was built on (looked up beside the bundle,
    then in ``models_dir``); a network that changed since is refused."""
    dlr = DlrModel.load(dlr_bundle)
    record = dlr.record
    beside = Path(dlr_bundle).parent / record["segmentation_model"]
    segmentation_folder = beside if beside.is_dir() else Path(models_dir) / record["segmentation_model"]
    model = load_filter_bank(segmentation_folder)
    if model_key(model, segmentation_folder, descriptor_options(record)) != record["segmentation_key"]:
        raise InputError(segmentation_folder, f"is not the network DLR bundle {Path(dlr_bundle).name} was built on",
                         "Restore that segmentation bundle, or rebuild the DLR bundle with idh-predictor dlr --save-model")
    return dlr, model, segmentation_folder


def descriptor_options(record: dict) -> DescriptorOptions:
    """The descriptor sampling a DLR bundle was built with (its ``descriptor_options`` record)."""
    return DescriptorOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["descriptor_options"].items()})


def predict_dlr_case(case: Case, mask: sitk.Image, dlr_bundle: str | Path = DEFAULT_DLR_MODEL,
                     models_dir: Path = DEFAULT_MODELS, progress: Callable[[int, int], None] | None = None,
                     mask_source: str = "given mask") -> dict[str, object]:
    """IDH-mutant probability, decision value and top features of an in-memory ``case`` inside
    ``mask`` (BraTS labels, e.g. corrected in Slicer's Segment Editor)."""
    dlr, model, _ = load_dlr_predictor(dlr_bundle, models_dir)
    return _predict(dlr, model, case, mask, dlr_bundle, progress, mask_source)


def _predict(dlr: DlrModel, model: SegmentationModel, case: Case, mask: sitk.Image, dlr_bundle: str | Path,
             progress: Callable[[int, int], None] | None, mask_source: str) -> dict[str, object]:
    record = dlr.record
    missing = [m for m in model.modalities if m not in case.images]
    if missing:
        raise InputError(case.folder, f"the DLR model needs {', '.join(missing)}", "Load or select those volumes")
    layer = record["layer"]
    descriptors = deep_descriptors(model.network, model.modalities, case, mask, (layer,), descriptor_options(record),
                                   progress)[layer]
    prediction = dlr.predict(descriptors)
    return {"case_id": case.case_id, "idh_mutant_probability": prediction.probability,
            # the class follows the calibrated probability shown beside it: Platt scaling moves the
            # SVM's decision threshold (0) where the training cohort's prevalence puts it
            "predicted_class": "mutant" if prediction.probability >= 0.5 else "wildtype",
            "decision_value": prediction.decision, "mask": mask_source, "model": str(dlr_bundle),
            "model_metrics": record.get("metrics", {}), "top_features": prediction.top_features,
            "note": record.get("note", "")}


def predict_dlr(case_dir: str | Path, dlr_bundle: str | Path = DEFAULT_DLR_MODEL, mask: sitk.Image | None = None,
                models_dir: Path = DEFAULT_MODELS, progress: Callable[[int, int], None] | None = None,
                preprocess: PreprocessMode = "auto", labels_out: Path | None = None) -> dict[str, object]:
    """``predict_dlr_case`` for a case folder, raw or BraTS-ready (``preprocess`` as in
    ``preprocessing.prepare``). The tumour mask is, in order: ``mask``, the case's ``_seg`` file, or
    a new segmentation by the network the DLR bundle was built on (written to ``labels_out`` in
    the reference series' original geometry when given). The result carries the preparation
    record and every quality verdict."""
    dlr, model, segmentation_folder = load_dlr_predictor(dlr_bundle, models_dir)
    prepared = prepare_case_folder(case_dir, model.modalities, preprocess)
    case, quality = prepared.case, prepared.quality
    mask_source = "given mask"
    if mask is not None or case.labels is not None:  # segmenting checks the input itself
        checked_network_input(model, axial_case(case, model.modalities), quality)
        quality.raise_if_failed(case.folder)
    if mask is None and case.labels is not None:
        mask, mask_source = case.labels, str(case.files["seg"])
        check_tumour(quality, sitk.GetArrayViewFromImage(mask), sitk.GetArrayViewFromImage(case.brain) > 0,
                     float(np.prod(mask.GetSpacing())) / 1000)
        quality.raise_if_failed(case.files["seg"])
    elif mask is None:
        log.info("%s has no _seg file: segmenting it with %s", case_dir, segmentation_folder.name)
        segmentation = segment_prepared(model, prepared)
        mask, mask_source, quality = segmentation.prepared_labels, f"segmented by {segmentation_folder.name}", segmentation.quality
        if labels_out is not None:
            write_image(segmentation.labels, labels_out)
    result = _predict(dlr, model, case, mask, dlr_bundle, progress, mask_source)
    return {**result, "preparation": prepared.record(), "quality": quality.as_dict()}


def describe_prediction(result: dict[str, object], features: int = 5) -> dict[str, str]:
    """Display lines for one DLR prediction (the Slicer panel): probability and class, the
    bundle's validation AUC with its CI and validation scheme, the top features."""
    from ..validation.report import metric_cell

    metrics = {name: values for name, values in dict(result.get("model_metrics") or {}).items()
               if isinstance(values, dict) and isinstance(values.get("auc"), dict)}
    # a bundle is cross-validated on its training cohort's own _seg masks (the phantom's truth for
    # the shipped one); deployment-mode validation adds held-out figures on the CNN's masks
    reference = next((name for name in metrics if not name.startswith("held_out")), None)
    on_cnn = metrics.get("held_out_simulated_cnn_masks")
    auc = (f"{metric_cell(metrics[reference]['auc'])} ({reference.replace('_', ', ')}, the cohort's reference masks)"
           if reference else "not recorded")
    if on_cnn:
        auc += f"; on {on_cnn['masks']} masks, {on_cnn['patients']} held-out simulated patients: {metric_cell(on_cnn['auc'])}"
    top = [f"{f['feature']} (towards {f['towards']})" for f in list(result.get("top_features") or [])[:features]]
    return {"prediction": f"IDH-mutant probability {result['idh_mutant_probability']:.2f} ({result['predicted_class']})",
            "validation": f"model validation AUC {auc}", "features": "; ".join(top) or "none"}
