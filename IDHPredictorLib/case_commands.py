"""The per-case work of ``segment`` and ``predict``, called by the command line for one case and by
``batch`` for every case of a cohort (here or on a Dask worker), so that both give the same files."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .io.atomic import atomic_path
from .quality import QualityReport

ProgressFactory = Callable[[str, str], Callable[[int, int], None] | None]


def _no_progress(_description: str, _unit: str) -> None:
    return None


@dataclass(frozen=True)
class SegmentOptions:
    """``idh-predictor segment`` options that change the result."""

    model: str | None = None       # bundle folder; None: the shipped one matching the case's modalities
    preprocess: str = "auto"       # auto | always | never (preprocessing.prepare)
    postprocess: bool = True
    device: str = "auto"


def segment_case(case_dir: str | Path, labels_out: Path, report_out: Path, options: SegmentOptions,
                 progress: ProgressFactory = _no_progress, labels_named: Path | None = None) -> tuple[dict[str, object], object]:
    """Segment one case folder: the label map (on the case's original reference grid) to
    ``labels_out`` and its report (model, preparation, quality verdicts) to ``report_out``; the
    report names the labels as ``labels_named`` (their final path when written to a temporary
    folder first). Returns the report and the segmentation result (for an overlay figure)."""
    from .io.images import write_image
    from .preprocessing.prepare import prepare_case_folder
    from .segmentation.inference import choose_device, segment_prepared
    from .segmentation.model_bundle import default_bundle_for, find_case_roles, load_model

    bundle = Path(options.model) if options.model else default_bundle_for(find_case_roles(case_dir))
    model = load_model(bundle, choose_device(options.device))
    prepared = prepare_case_folder(case_dir, model.modalities, options.preprocess, progress=progress("preprocessing", "step"))
    result = segment_prepared(model, prepared, postprocessing=options.postprocess,
                              progress=progress(f"segmenting {prepared.case.case_id} ({bundle.name})",
                                                "window" if model.is_volumetric else "slice"))
    write_image(result.labels, labels_out)
    record = {"case_id": prepared.case.case_id, "labels": str(labels_named or labels_out), "model": str(bundle),
              "preparation": prepared.record(), "quality": result.quality.as_dict()}
    with atomic_path(report_out) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record, (prepared, result, bundle)


@dataclass(frozen=True)
class PredictOptions:
    """``idh-predictor predict`` options that change the result."""

    dlr_model: str | None = None         # None: the shipped DLR bundle
    fusion_model: str | None = None      # one calibrated answer from DLR, perfusion and age
    perfusion_model: str | None = None
    skip_dlr: bool = False
    preprocess: str = "auto"
    coverage: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def predict_case(case_dir: str | Path, options: PredictOptions, age: float | None = None, labels_out: Path | None = None,
                 heatmap: Path | None = None, rcbv_map: Path | None = None,
                 progress: ProgressFactory = _no_progress) -> dict[str, object]:
    """One case's IDH prediction (DLR, perfusion and/or the fused answer) as the JSON ``predict``
    prints. ``labels_out``: where the CNN's mask goes when the case has no ``_seg``."""
    result: dict[str, object] = {}
    if options.fusion_model:
        from .fusion.bundle import predict_fusion

        result = predict_fusion(case_dir, age, Path(options.fusion_model), options.preprocess,
                                progress("deep descriptors", "scale"), labels_out, options.coverage)
    elif not options.skip_dlr:
        from .dlr.predict import DEFAULT_DLR_MODEL, predict_dlr

        result["dlr"] = predict_dlr(case_dir, Path(options.dlr_model) if options.dlr_model else DEFAULT_DLR_MODEL,
                                    progress=progress("deep descriptors", "scale"), preprocess=options.preprocess,
                                    labels_out=labels_out)
    if options.perfusion_model:
        from .perfusion.model_bundle import predict_perfusion

        result["perfusion"] = predict_perfusion(case_dir, Path(options.perfusion_model), heatmap, rcbv_map)
    return result


def quality_reports(result: dict[str, object]) -> list[QualityReport]:
    """The quality verdicts a prediction carries (DLR input checks, DSC checks), for display."""
    reports = []
    if isinstance(result.get("dlr"), dict):
        reports.append(QualityReport.from_dict(result["dlr"]["quality"]))
    if result.get("perfusion"):
        reports.append(QualityReport.from_dict(result["perfusion"]["dsc_quality"]))
    return reports
