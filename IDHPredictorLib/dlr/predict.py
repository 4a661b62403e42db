"""IDH prediction for one case with a saved DLR bundle (segmenting first when the case has no mask)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..io.case import read_case
from ..segmentation.inference import segment_case
from ..segmentation.model_bundle import DEFAULT_MODELS, load_model
from .cache import model_key
from .descriptors import DescriptorOptions, deep_descriptors
from .model import DlrModel

log = logging.getLogger(__name__)
DEFAULT_DLR_MODEL = DEFAULT_MODELS / "dlr-flair-t1ce"


def predict_dlr(case_dir: str | Path, dlr_bundle: str | Path = DEFAULT_DLR_MODEL, mask: sitk.Image | None = None,
                models_dir: Path = DEFAULT_MODELS, progress: Callable[[int, int], None] | None = None) -> dict[str, object]:
    """IDH-mutant probability, decision value and top features of one case.

    The segmentation network is looked up beside the DLR bundle, then in ``models_dir``.
    The tumour mask is, in order: ``mask`` (e.g. corrected in Slicer), the case's ``_seg`` file,
    or a new segmentation by the network the DLR bundle was built on.
    """
    dlr = DlrModel.load(dlr_bundle)
    record = dlr.record
    beside = Path(dlr_bundle).parent / record["segmentation_model"]
    segmentation_folder = beside if beside.is_dir() else Path(models_dir) / record["segmentation_model"]
    model = load_model(segmentation_folder)
    options = DescriptorOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["descriptor_options"].items()})
    if model_key(model, segmentation_folder, options) != record["segmentation_key"]:
        raise InputError(segmentation_folder, f"is not the network DLR bundle {Path(dlr_bundle).name} was built on",
                         "Restore that segmentation bundle, or rebuild the DLR bundle with idh-predictor dlr --save-model")
    case = read_case(case_dir, model.modalities, labels=True, dsc=False)
    mask_source = "given mask"
    if mask is None and case.labels is not None:
        mask, mask_source = case.labels, str(case.files["seg"])
    elif mask is None:
        log.info("%s has no _seg file: segmenting it with %s", case_dir, segmentation_folder.name)
        mask, mask_source = segment_case(model.network, model.modalities, case), f"segmented by {segmentation_folder.name}"
    layer = record["layer"]
    descriptors = deep_descriptors(model.network, model.modalities, case, mask, (layer,), options, progress)[layer]
    prediction = dlr.predict(descriptors)
    return {"case_id": case.case_id, "idh_mutant_probability": prediction.probability,
            "predicted_class": "mutant" if prediction.decision > 0 else "wildtype",
            "decision_value": prediction.decision, "mask": mask_source, "model": str(dlr_bundle),
            "model_metrics": record.get("metrics", {}), "top_features": prediction.top_features,
            "note": record.get("note", "")}
