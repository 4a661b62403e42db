"""The Slicer module's workflow on scene nodes: load a case, segment, DLR, perfusion, results.

``IDHPredictorLogic`` delegates here, and the tests run the same functions on a bare
``vtkMRMLScene`` from ``slicer-core``. Scene access goes through ``slicer_bridge``; every number
comes from the library functions the command line uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import slicer_bridge as bridge
from .dlr.predict import predict_dlr_case
from .errors import InputError
from .io.atomic import atomic_directory, atomic_path
from .io.case import MODALITIES, REFERENCE_ORDER, Case, read_case
from .io.dsc import DscSeries, with_short_echo
from .io.images import same_grid, write_image
from .perfusion.curves import CHANNELS
from .perfusion.model_bundle import DEFAULT_PERFUSION_MODEL, PerfusionPrediction, predict_perfusion_series
from .preprocessing.prepare import PreprocessMode, prepare_case
from .quality import QualityReport
from .segmentation.model_bundle import default_bundle_for, load_model

Progress = Callable[[int, int], None]
# Node attributes that keep a case's identity and results with the scene (saved in the .mrml and
# read back on reload), on every structural volume of the case.
CASE_ID_ATTRIBUTE = "IDHPredictor.caseId"
RESULTS_ATTRIBUTE = "IDHPredictor.results"
ATTENTION_ATTRIBUTE = "IDHPredictor.attentionPlot"
DICOM_SOURCE_ATTRIBUTE = "IDHPredictor.dicomSource"


@dataclass
class SceneCase:
    """One patient's nodes: structural volumes by role (t1, t1ce, t2, flair), the tumour
    segmentation and the DSC series (sequence or multi-volume node; for a dual-echo series,
    ``dsc`` is the long echo and ``dsc_short`` the short one). ``results`` and ``attention_plot``
    (the perfusion curves and attention weights the report draws) are saved on the volume nodes
    by ``save_results``, so they survive a scene save and reload, with ``dicom_source``: for a
    case loaded from a DICOM study, the reference series' files (the report adds a DICOM SEG and
    SR on them)."""

    case_id: str
    volumes: dict[str, object]
    segmentation: object | None = None
    dsc: object | None = None
    dsc_short: object | None = None
    results: dict[str, object] = field(default_factory=dict)
    attention_plot: dict[str, object] | None = None
    dicom_source: list[str] | None = None

    @property
    def reference(self) -> object:
        """The volume node whose grid the label map lives on (T1c, else FLAIR, T2, T1)."""
        role = next((r for r in REFERENCE_ORDER if self.volumes.get(r) is not None), None)
        if role is None:
            raise InputError(None, f"{self.case_id}: no structural volume selected", "Select at least the FLAIR volume")
        return self.volumes[role]


def scene_case_from_nodes(volumes: Mapping[str, object | None], segmentation: object | None = None,
                          dsc: object | None = None, dsc_short: object | None = None) -> SceneCase:
    """The case the selected nodes show, with the results saved on them (``save_results``): the
    case id is the one ``load_case`` recorded, else the reference volume's name before its last
    ``_`` (``P001_flair`` -> ``P001``)."""
    selected = {role: node for role, node in volumes.items() if node is not None}
    scene_case = SceneCase("", selected, segmentation, dsc, dsc_short)
    reference = scene_case.reference
    name = reference.GetName()
    scene_case.case_id = reference.GetAttribute(CASE_ID_ATTRIBUTE) or (name.rsplit("_", 1)[0] if "_" in name else name)
    saved = reference.GetAttribute(RESULTS_ATTRIBUTE)
    scene_case.results = json.loads(saved) if saved else {}
    plot = reference.GetAttribute(ATTENTION_ATTRIBUTE)
    scene_case.attention_plot = json.loads(plot) if plot else None
    source = reference.GetAttribute(DICOM_SOURCE_ATTRIBUTE)
    scene_case.dicom_source = json.loads(source) if source else None
    return scene_case


def save_results(scene_case: SceneCase) -> None:
    """Keep the case's id, results and attention plot on its volume nodes (saved with the scene)."""
    attributes = {CASE_ID_ATTRIBUTE: scene_case.case_id, RESULTS_ATTRIBUTE: json.dumps(scene_case.results)}
    if scene_case.attention_plot is not None:
        attributes[ATTENTION_ATTRIBUTE] = json.dumps(scene_case.attention_plot)
    if scene_case.dicom_source is not None:
        attributes[DICOM_SOURCE_ATTRIBUTE] = json.dumps(scene_case.dicom_source)
    for node in scene_case.volumes.values():
        for name, value in attributes.items():
            node.SetAttribute(name, value)


def load_case(scene: object, case_dir: str | Path) -> SceneCase:
    """Read a BraTS-layout case folder, or a DICOM study folder (series recognised from their
    headers), with the library (validated) and add it to ``scene``: one volume node per modality
    (each on its own grid, as raw series come), the ``_seg`` file as a segmentation node, DSC as
    a sequence."""
    from .io.dicom_study import as_case_folder

    with as_case_folder(case_dir) as study:
        case = read_case(study.folder, resample=False)
    reference_series = next((study.assigned[r] for r in REFERENCE_ORDER if r in (study.assigned or {})), None)
    volumes = {role: bridge.volume_node_from_image(scene, image, f"{case.case_id}_{role}")
               for role, image in case.images.items()}
    scene_case = SceneCase(case.case_id, volumes)
    if reference_series is not None:
        scene_case.dicom_source = [str(path) for path in reference_series.files]
    if case.labels is not None:
        scene_case.segmentation = bridge.segmentation_node_from_labels(
            scene, case.labels, scene_case.reference, f"{case.case_id} tumour")
    if case.dsc is not None:
        scene_case.dsc = bridge.dsc_sequence_node_from_series(scene, case.dsc, f"{case.case_id}_dsc")
        if case.dsc.dual_echo:
            short = DscSeries(case.dsc.short_echo, case.dsc.repetition_time_s, case.dsc.short_echo_time_s, case.dsc.source)
            scene_case.dsc_short = bridge.dsc_sequence_node_from_series(scene, short, f"{case.case_id}_dsc-short")
    save_results(scene_case)
    return scene_case


def dsc_from_nodes(scene_case: SceneCase, repetition_time_s: float | None = None,
                   echo_time_s: float | None = None) -> DscSeries:
    """The DSC series of the case's node(s): single echo, or dual echo when a short-echo node is set."""
    dsc = bridge.dsc_series_from_node(scene_case.dsc, repetition_time_s, echo_time_s)
    if scene_case.dsc_short is None:
        return dsc
    return with_short_echo(dsc, bridge.dsc_series_from_node(scene_case.dsc_short, repetition_time_s, short_echo=True))


def case_from_nodes(scene_case: SceneCase, with_labels: bool = True, resample: bool = True) -> Case:
    """The library's ``Case`` from the nodes: images on the reference grid (others resampled,
    linear) unless ``resample`` is False (raw series, each on its own grid, for
    ``preprocessing.prepare``), labels exported from the (possibly edited) segmentation node."""
    images = {role: sitk.Cast(bridge.image_from_volume_node(scene_case.volumes[role]), sitk.sitkFloat32)
              for role in MODALITIES if scene_case.volumes.get(role) is not None}
    reference = images[next(role for role in REFERENCE_ORDER if role in images)]
    for role, image in images.items():
        if resample and not same_grid(image, reference):
            images[role] = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    labels = None
    if with_labels and scene_case.segmentation is not None:
        labels = bridge.labels_from_segmentation_node(scene_case.segmentation, scene_case.reference)
    return Case(scene_case.case_id, Path(f"<scene case {scene_case.case_id}>"), images, labels)


def write_case_folder(scene_case: SceneCase, folder: str | Path, with_labels: bool = True) -> Path:
    """Write the selected volumes as they are (each on its own grid: the background process
    prepares raw series itself) and the current segmentation as a BraTS-layout case folder, the
    input of a background ``idh-predictor`` process."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    case = case_from_nodes(scene_case, with_labels, resample=False)
    for role, image in case.images.items():
        write_image(image, folder / f"{case.case_id}_{role}.nii.gz")
    if case.labels is not None:
        write_image(case.labels, folder / f"{case.case_id}_seg.nii.gz")
    return folder


def segment(scene: object, scene_case: SceneCase, model_folder: str | Path | None = None,
            progress: Progress | None = None, preprocess: PreprocessMode = "auto") -> object:
    """Segment the case with the CNN (default: the shipped bundle for the selected modalities),
    raw volumes prepared first (``preprocess`` as in ``preprocessing.prepare``); put the result in
    the case's segmentation node (replaced if it exists) on the reference volume's own grid and
    the quality verdicts in the case's results."""
    from .segmentation.inference import segment_prepared

    available = {role for role, node in scene_case.volumes.items() if node is not None}
    folder = Path(model_folder) if model_folder else default_bundle_for(available)
    model = load_model(folder)
    missing = [m for m in model.modalities if m not in available]
    if missing:
        raise InputError(folder, f"needs {', '.join(missing)}, which is not selected", "Select it, or choose another model")
    prepared = prepare_case(case_from_nodes(scene_case, with_labels=False, resample=False), preprocess)
    result = segment_prepared(model, prepared, progress=progress)
    record_quality(scene_case, prepared.record(), result.quality)
    return set_labels(scene, scene_case, result.labels)


def record_quality(scene_case: SceneCase, preparation: Mapping[str, object], quality: QualityReport) -> None:
    """Keep the input kind, the preprocessing steps and the quality verdicts with the case's
    results (results table, report): the verdict, then one line per check."""
    scene_case.results["quality"] = {"verdict": quality.verdict, "input": preparation.get("input_kind"),
                                     "steps": ", ".join(str(s["step"]) for s in preparation.get("steps", [])),
                                     **{check.name: check.line() for check in quality.checks}}
    save_results(scene_case)


def set_labels(scene: object, scene_case: SceneCase, labels: sitk.Image) -> object:
    """Replace the case's segmentation node by one holding ``labels`` (BraTS 1/2/4)."""
    if scene_case.segmentation is not None:
        scene.RemoveNode(scene_case.segmentation)
    scene_case.segmentation = bridge.segmentation_node_from_labels(scene, labels, scene_case.reference,
                                                                   f"{scene_case.case_id} tumour")
    return scene_case.segmentation


def require_segmentation(scene_case: SceneCase) -> None:
    if scene_case.segmentation is None:
        raise InputError(None, f"{scene_case.case_id}: no tumour segmentation", "Run Segmentation first, or select one")


def compute_dlr(scene_case: SceneCase, dlr_bundle: str | Path | None = None, progress: Progress | None = None,
                preprocess: PreprocessMode = "auto") -> dict[str, object]:
    """DLR IDH-mutant probability and top features from the current (corrected) segmentation, the
    volumes prepared as for segmentation."""
    from .dlr.predict import DEFAULT_DLR_MODEL

    require_segmentation(scene_case)
    case = prepare_case(case_from_nodes(scene_case, resample=False), preprocess).case
    result = predict_dlr_case(case, case.labels, dlr_bundle or DEFAULT_DLR_MODEL, progress=progress,
                              mask_source=f"segmentation node {scene_case.segmentation.GetName()}")
    scene_case.results["dlr"] = result
    save_results(scene_case)
    return result


def compute_fusion(scene: object, scene_case: SceneCase, age: float, bundle: str | Path | None = None,
                   preprocess: PreprocessMode = "auto", progress: Progress | None = None) -> dict[str, object]:
    """The fused answer (calibrated probability and prediction set) from the fusion bundle's own
    DLR and, when the case has a DSC series, perfusion components, on the current segmentation."""
    from .fusion.bundle import DEFAULT_FUSION_MODEL, DLR_PART, PERFUSION_PART, fuse, fusion_cautions

    bundle = Path(bundle or DEFAULT_FUSION_MODEL)
    require_segmentation(scene_case)
    mask_source = f"segmentation node {scene_case.segmentation.GetName()}"
    prepared = prepare_case(case_from_nodes(scene_case, resample=False), preprocess)
    dlr = predict_dlr_case(prepared.case, prepared.case.labels, bundle / DLR_PART, progress=progress, mask_source=mask_source)
    perfusion = None
    if scene_case.dsc is not None:
        labels = bridge.labels_from_segmentation_node(scene_case.segmentation, scene_case.reference)
        perfusion = predict_perfusion_series(dsc_from_nodes(scene_case), labels,
                                             prepared.to_native(prepared.case.brain), scene_case.case_id,
                                             bundle / PERFUSION_PART).result
    answer = {**fuse(dlr, perfusion, age, bundle, fusion_cautions(prepared.quality, perfusion)), "mask": mask_source}
    scene_case.results["fusion"] = answer
    save_results(scene_case)
    return answer


def compute_perfusion(scene: object, scene_case: SceneCase, bundle: str | Path | None = None,
                      aif_markups: object | None = None, repetition_time_s: float | None = None,
                      echo_time_s: float | None = None, preprocess: PreprocessMode = "auto") -> PerfusionPrediction:
    """Perfusion prediction from the DSC node and the current segmentation, inside the brain that
    preparation finds (skull stripped for raw volumes); adds the curve chart (attention heat band)
    and the rCBV map to the scene."""
    require_segmentation(scene_case)
    if scene_case.dsc is None:
        raise InputError(None, f"{scene_case.case_id}: no DSC series", "Load the DSC series and select it")
    dsc = dsc_from_nodes(scene_case, repetition_time_s, echo_time_s)
    aif_voxels = None if aif_markups is None else bridge.aif_voxels_from_markups(aif_markups, dsc)
    prepared = prepare_case(case_from_nodes(scene_case, resample=False), preprocess)
    labels = bridge.labels_from_segmentation_node(scene_case.segmentation, scene_case.reference)
    prediction = predict_perfusion_series(dsc, labels, prepared.to_native(prepared.case.brain), scene_case.case_id,
                                          bundle or DEFAULT_PERFUSION_MODEL, aif_voxels)
    curves = prediction.curves
    shown = [index for index, present in enumerate(curves.present) if present]
    bridge.plot_curves(scene, curves.grid_s, curves.curves[shown], [CHANNELS[i] for i in shown], prediction.attention,
                       f"{scene_case.case_id} perfusion")
    bridge.rcbv_map_node(scene, prediction.analysis.rcbv_image(), f"{scene_case.case_id} rCBV")
    scene_case.results["perfusion"] = prediction.result
    scene_case.attention_plot = {"grid_s": curves.grid_s.tolist(), "curves": curves.curves.tolist(),
                                 "present": [bool(p) for p in curves.present], "attention": prediction.attention.tolist(),
                                 "title": f"{scene_case.case_id}: {prediction.result['temporal_pattern']}"}
    save_results(scene_case)
    return prediction


def results_table(scene: object, scene_case: SceneCase, age: float | None = None) -> object:
    """The patient's one results table node (created or updated)."""
    header = {"case_id": scene_case.case_id, **({"patient_age": age} if age is not None else {})}
    return bridge.table_node_from_results(scene, {**header, **scene_case.results}, f"{scene_case.case_id} results")


def export_report(scene_case: SceneCase, folder: str | Path) -> Path:
    """Report folder (written whole or not at all): result.json, the tumour label map, a
    segmentation overlay PNG and, with perfusion, the attention heat map PNG; for a case loaded
    from a DICOM study with a prediction, ``dicom/`` with the SEG and the SR on its series."""
    from .io.dicom_export import export_dicom, reported_answer
    from .perfusion.patterns import attention_heatmap
    from .segmentation.figures import overlay_figure

    case = case_from_nodes(scene_case)
    record = {"case_id": scene_case.case_id, **scene_case.results}
    if scene_case.dicom_source and (reported_answer(scene_case.results) is None or case.labels is None):
        record["dicom"] = "not written: segment the tumour and run DLR or the combined answer first"
    with atomic_directory(folder) as tmp:
        (tmp / "result.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if scene_case.dicom_source and "dicom" not in record:
            export_dicom(case.labels, [Path(p) for p in scene_case.dicom_source], scene_case.results, tmp / "dicom")
        if case.labels is not None:
            write_image(case.labels, tmp / f"{scene_case.case_id}_seg.nii.gz")
            # a FLAIR on its own grid (raw series) is not registered here: show the labels over the reference
            native_flair = scene_case.volumes.get("flair")
            aligned = native_flair is not None and same_grid(bridge.image_from_volume_node(native_flair), case.reference)
            background = case.images["flair"] if aligned else case.reference
            overlay_figure(sitk.GetArrayFromImage(background), sitk.GetArrayFromImage(case.labels), None,
                           tmp / "segmentation.png", f"{scene_case.case_id}: tumour segmentation")
        plot = scene_case.attention_plot
        if plot is not None:
            attention_heatmap(np.asarray(plot["curves"]), np.asarray(plot["attention"]), np.asarray(plot["grid_s"]),
                              tmp / "attention.png", str(plot["title"]), np.asarray(plot["present"]))
    return Path(folder)


def process_case(scene: object, case_dir: str | Path, output_dir: str | Path, settings: Mapping[str, object] | None = None,
                 progress: Progress | None = None) -> dict[str, object]:
    """Batch: load, segment with the CNN, DLR, perfusion (when the case has DSC), results table and
    report folder ``output_dir/<case id>``. ``settings`` may name ``segmentation_model``,
    ``dlr_model``, ``perfusion_model``, ``preprocess`` (auto, always, never),
    ``use_existing_labels`` (skip the CNN when the case has a ``_seg`` file), and ``age`` (years;
    adds the fused answer from ``fusion_model``, default the shipped fusion bundle)."""
    settings = dict(settings or {})
    scene_case = load_case(scene, case_dir)
    if scene_case.segmentation is None or not settings.get("use_existing_labels", False):
        segment(scene, scene_case, settings.get("segmentation_model"), progress, settings.get("preprocess", "auto"))
    compute_dlr(scene_case, settings.get("dlr_model"), preprocess=settings.get("preprocess", "auto"))
    if scene_case.dsc is not None:
        compute_perfusion(scene, scene_case, settings.get("perfusion_model"), preprocess=settings.get("preprocess", "auto"))
    if settings.get("age") is not None:
        compute_fusion(scene, scene_case, float(settings["age"]), settings.get("fusion_model"), settings.get("preprocess", "auto"))
    results_table(scene, scene_case)
    export_report(scene_case, Path(output_dir) / scene_case.case_id)
    return {"case_id": scene_case.case_id, **scene_case.results}


def process_cohort(scene: object, cohort_dir: str | Path, output_dir: str | Path,
                   settings: Mapping[str, object] | None = None, progress: Progress | None = None) -> list[dict]:
    """``process_case`` for every case folder of a cohort. A case with bad input is reported (its
    error in the summary) and the run goes on; each case's nodes are removed after it, except its
    results table, so a large cohort does not fill the scene. Writes ``output_dir/summary.json``."""
    from .io.cohort import case_folders

    folders = case_folders(cohort_dir)
    summary: list[dict] = []
    for done, folder in enumerate(folders, start=1):
        before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
        try:
            summary.append(process_case(scene, folder, output_dir, settings))
        except InputError as error:
            summary.append({"case_id": folder.name, "error": str(error)})
        finally:
            added = [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]
            for node in filter(None, (scene.GetNodeByID(i) for i in added if i not in before)):
                if not (node.IsA("vtkMRMLTableNode") and node.GetName().endswith(" results")):
                    scene.RemoveNode(node)
        if progress:
            progress(done, len(folders))
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(output_dir) / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
