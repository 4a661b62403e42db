"""Results as DICOM a PACS stores and a reading station shows: a Segmentation (SEG) of the three
tumour sub-regions on the source series' frames, and a Comprehensive 3D SR measurement report
(TID 1500) with the sub-region volumes, rCBV, the calibrated IDH-mutant probability and the
prediction set. Written with highdicom (the reference implementation of both IODs); the patient
and study come from the source series, every new object gets new UIDs, and the folder is written
whole or not at all.

Codes: segment types are the SNOMED CT codes the Slicer segments carry (``io.terminology``);
volume SCT 118565006 in UCUM ml; rCBV DCM 126398 "Relative Regional Blood Volume" with the mean
(SCT 373098007) and 95th percentile (SCT 371889001) as derivations. The IDH concepts have no
standard code: they use the local scheme 99IDHP, declared in the SR's coding scheme sequence.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..errors import InputError
from .atomic import atomic_directory
from .terminology import SEGMENT_CATEGORY, TUMOUR_SEGMENTS

ALGORITHM = "IDHPredictor"
MANUFACTURER = "IDHPredictor developers"
RESEARCH_USE = "Research use only, not for diagnosis"
LOCAL_SCHEME = "99IDHP"
SEG_FILE, SR_FILE = "tumour-seg.dcm", "idh-report-sr.dcm"


@functools.cache
def _codes():
    """The coded concepts (built once, lazily: highdicom is imported only when DICOM is used)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    concept = hd.sr.CodedConcept
    return {
        "category": concept(*SEGMENT_CATEGORY),
        "types": {value: concept(code, "SCT", meaning) for value, (_, _, code, meaning) in TUMOUR_SEGMENTS.items()},
        "brain": codes.SCT.Brain, "volume": codes.SCT.Volume, "mean": codes.SCT.Mean,
        "p95": concept("371889001", "SCT", "95th Percentile Value"),
        "rcbv": concept("126398", "DCM", "Relative Regional Blood Volume"),
        "whole": concept("108369006", "SCT", "Neoplasm"),
        "ml": concept("ml", "UCUM", "milliliter"), "ratio": concept("{ratio}", "UCUM", "ratio"),
        "unitless": concept("1", "UCUM", "no units"),
        "probability": concept("IDHP001", LOCAL_SCHEME, "IDH-mutant probability (calibrated)"),
        "prediction_set": concept("IDHP002", LOCAL_SCHEME, "IDH prediction set"),
        "set_values": {"mutant": concept("IDHP010", LOCAL_SCHEME, "IDH-mutant"),
                       "wildtype": concept("IDHP011", LOCAL_SCHEME, "IDH-wildtype"),
                       "uncertain": concept("IDHP012", LOCAL_SCHEME, "Uncertain (both classes)"),
                       "empty": concept("IDHP013", LOCAL_SCHEME, "Empty (neither class)")},
    }


def _slice_normal(image_orientation: Sequence[float]) -> np.ndarray:
    """The slice normal of an ImageOrientationPatient (row direction x column direction)."""
    orientation = np.asarray(image_orientation, float)
    return np.cross(orientation[:3], orientation[3:])


def _positions(sources: list) -> np.ndarray:
    """Each slice's position along the series' slice normal, mm."""
    normal = _slice_normal(sources[0].ImageOrientationPatient)
    return np.array([float(normal @ np.asarray(ds.ImagePositionPatient, float)) for ds in sources])


def read_source_series(files: Sequence[Path]) -> list:
    """The reference series' datasets, ordered along the slice normal (the label map's slice order)."""
    import pydicom

    datasets = [pydicom.dcmread(path) for path in files]
    return [datasets[i] for i in np.argsort(_positions(datasets), kind="stable")]


def _frames(labels: sitk.Image, sources: list) -> np.ndarray:
    """The label map as (frames, rows, columns), frame k on source image k: each source slice's
    position is looked up in the label map's grid, so any slice order or flip is followed."""
    array = sitk.GetArrayViewFromImage(labels)
    frames = []
    for ds in sources:
        index = labels.TransformPhysicalPointToContinuousIndex([float(v) for v in ds.ImagePositionPatient])
        k = int(round(index[2]))
        if max(abs(index[0]), abs(index[1]), abs(index[2] - k)) > 0.01 or not 0 <= k < array.shape[0] \
                or (ds.Rows, ds.Columns) != array.shape[1:]:
            raise InputError(ds.filename, "the label map is not on this series' grid",
                             "Write the labels in the reference series' own geometry (what segment and predict do)")
        frames.append(array[k])
    return np.stack(frames)


def _with_slice_spacing(sources: list) -> list:
    """Copies of the sources with SliceThickness and SpacingBetweenSlices set from the positions:
    highdicom copies them into the SEG, and a series written slice by slice often lacks them."""
    steps = np.diff(_positions(sources))
    if len(steps) and not np.allclose(steps, steps[0], atol=1e-3):
        raise InputError(sources[0].filename, "the reference series' slices are not evenly spaced",
                         "Resample the series to even spacing before exporting DICOM")
    fixed = []
    for ds in sources:
        ds = copy.deepcopy(ds)
        if len(steps):
            ds.SpacingBetweenSlices = round(float(steps[0]), 6)
        if ds.get("SliceThickness") in (None, ""):
            ds.SliceThickness = ds.get("SpacingBetweenSlices", 1.0)
        fixed.append(ds)
    return fixed


def segmentation_dataset(labels: sitk.Image, sources: list):
    """The DICOM SEG (binary, three segments; empty frames kept so the geometry is the source's)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm_codes
    from pydicom.uid import generate_uid

    coded = _codes()
    algorithm = hd.AlgorithmIdentificationSequence(name=ALGORITHM, version=__version__,
                                                   family=dcm_codes.cid7162.ArtificialIntelligence, source=MANUFACTURER)
    numbers = {value: number for number, value in enumerate(TUMOUR_SEGMENTS, start=1)}
    frames = _frames(labels, sources)
    unknown = set(np.unique(frames).tolist()) - {0, *TUMOUR_SEGMENTS}
    if unknown:
        raise InputError(None, f"label values {sorted(unknown)} are not BraTS tumour labels", "Use 1, 2 and 4")
    pixels = np.zeros(frames.shape, np.uint8)
    for value, number in numbers.items():
        pixels[frames == value] = number
    descriptions = [hd.seg.SegmentDescription(
        segment_number=numbers[value], segment_label=name, segmented_property_category=coded["category"],
        segmented_property_type=coded["types"][value], algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm, tracking_uid=generate_uid(), tracking_id=name,
        anatomic_regions=[coded["brain"]], display_color=hd.color.CIELabColor.from_rgb(*(int(255 * c) for c in colour)))
        for value, (name, colour, _, _) in TUMOUR_SEGMENTS.items()]
    return hd.seg.Segmentation(
        source_images=_with_slice_spacing(sources), pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=9001,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=ALGORITHM,
        software_versions=__version__, device_serial_number="0", content_label="GLIOMA_SEG",
        content_description=f"Tumour sub-regions. {RESEARCH_USE}"[:64], series_description=f"{ALGORITHM} tumour SEG (RUO)",
        omit_empty_frames=False)


def report_dataset(seg: object, sources: list, measurements: Mapping[str, object]):
    """The TID 1500 measurement report: one volumetric group per SEG segment (its volume), and a
    whole-tumour group with rCBV, the IDH-mutant probability, the prediction set and the
    research-use statement."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes as dcm_codes
    from pydicom.uid import generate_uid

    coded = _codes()
    algorithm = hd.sr.AlgorithmIdentification(name=ALGORITHM, version=__version__)
    device = hd.sr.ObserverContext(observer_type=dcm_codes.DCM.Device,
                                   observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                                       uid=generate_uid(), name=ALGORITHM, manufacturer_name=MANUFACTURER,
                                       model_name=f"{ALGORITHM} {__version__}", serial_number="0"))
    site = [hd.sr.FindingSite(coded["brain"])]
    groups = []
    for number, (value, (name, _, _, _)) in enumerate(TUMOUR_SEGMENTS.items(), start=1):
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=name),
            referenced_segment=hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                                                       segment_number=number,
                                                       source_series=hd.sr.SourceSeriesForSegmentation(sources[0].SeriesInstanceUID)),
            finding_type=coded["types"][value], finding_category=coded["category"], finding_sites=site, algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=coded["volume"], value=float(measurements["volume_ml"][value]), unit=coded["ml"],
                                            algorithm_id=algorithm)]))
    whole = []
    if measurements.get("rcbv_mean") is not None:
        whole += [hd.sr.Measurement(name=coded["rcbv"], value=float(measurements[key]), unit=coded["ratio"],
                                    derivation=coded[derivation], algorithm_id=algorithm)
                  for key, derivation in (("rcbv_mean", "mean"), ("rcbv_p95", "p95"))]
    whole.append(hd.sr.Measurement(name=coded["probability"], value=float(measurements["idh_mutant_probability"]),
                                   unit=coded["unitless"], algorithm_id=algorithm))
    evaluations = ([hd.sr.QualitativeEvaluation(name=coded["prediction_set"],
                                                value=coded["set_values"][str(measurements["prediction_set"])])]
                   if measurements.get("prediction_set") else None)
    tumour = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="Whole tumour (all segments)"),
        finding_type=coded["whole"], finding_category=coded["category"], finding_sites=site, algorithm_id=algorithm,
        measurements=whole, qualitative_evaluations=evaluations)
    tumour[0].ContentSequence.append(hd.sr.TextContentItem(name=dcm_codes.DCM.Comment, value=RESEARCH_USE,
                                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    groups.append(tumour)
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=device),
                                     procedure_reported=hd.sr.CodedConcept("24590-2", "LN", "MR Brain"),
                                     imaging_measurements=groups, title=dcm_codes.cid7021.ImagingMeasurementReport)
    sr = hd.sr.Comprehensive3DSR(evidence=[seg, *sources], content=report, series_instance_uid=generate_uid(),
                                 series_number=9002, sop_instance_uid=generate_uid(), instance_number=1,
                                 manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
                                 series_description=f"{ALGORITHM} report (RUO)")
    scheme = pydicom.Dataset()
    scheme.CodingSchemeDesignator = LOCAL_SCHEME
    scheme.CodingSchemeName = f"{ALGORITHM} local codes"
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def reported_answer(result: Mapping[str, object]) -> Mapping[str, object] | None:
    """The answer the SR reports: the fused one when there is one, else DLR's; None without either."""
    answer = dict(result.get("fusion") or result.get("dlr") or {})
    return answer if "idh_mutant_probability" in answer else None


def report_measurements(labels: sitk.Image, result: Mapping[str, object]) -> dict[str, object]:
    """What the SR reports, from the label map and ``predict``'s result: the ``reported_answer``
    (with its prediction set when fused); rCBV when perfusion ran."""
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=5)
    answer = reported_answer(result)
    if answer is None:
        raise InputError(None, "the result has no IDH-mutant probability to report", "Run predict with DLR or the fusion model")
    rcbv = dict((result.get("perfusion") or {}).get("rcbv") or {})
    return {"volume_ml": {value: round(float(counts[value]) * voxel_ml, 3) for value in TUMOUR_SEGMENTS},
            "idh_mutant_probability": round(float(answer["idh_mutant_probability"]), 4),
            "prediction_set": answer.get("prediction_set"),
            "rcbv_mean": round(float(rcbv["rcbv_mean"]), 4) if "rcbv_mean" in rcbv else None,
            "rcbv_p95": round(float(rcbv["rcbv_p95"]), 4) if "rcbv_p95" in rcbv else None}


def export_dicom(labels: sitk.Image, source_files: Sequence[Path], result: Mapping[str, object], out: str | Path) -> Path:
    """Write ``out/tumour-seg.dcm`` and ``out/idh-report-sr.dcm`` for one case (all or nothing)."""
    sources = read_source_series(source_files)
    seg = segmentation_dataset(labels, sources)
    sr = report_dataset(seg, sources, report_measurements(labels, result))
    with atomic_directory(out) as tmp:
        seg.save_as(tmp / SEG_FILE)
        sr.save_as(tmp / SR_FILE)
    return Path(out)


def read_segmentation(path: str | Path) -> sitk.Image:
    """A DICOM SEG of the three sub-regions back as a BraTS label map (SimpleITK, LPS geometry)."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    volume = seg.get_volume(combine_segments=True, relabel=False)
    normal = _slice_normal(seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient)
    if float(np.asarray(volume.direction)[:, 0] @ normal) < 0:
        volume = volume.flip_spatial(0)  # slices in the source series' order (along its normal), as the labels were
    values = {number: value for number, value in enumerate(TUMOUR_SEGMENTS, start=1)}
    array = np.zeros(volume.array.shape, np.uint8)
    for number, value in values.items():
        array[np.asarray(volume.array) == number] = value
    # highdicom's volume axes are (slice, row, column) in LPS; SimpleITK's array order is (z, y, x) too
    image = sitk.GetImageFromArray(array)
    direction = np.asarray(volume.direction)  # columns: unit vectors of axes 0 (slice), 1 (row), 2 (column)
    image.SetDirection(direction[:, ::-1].ravel().tolist())
    image.SetSpacing([float(s) for s in volume.spacing[::-1]])
    image.SetOrigin([float(p) for p in volume.position])
    return image


def read_report(path: str | Path) -> dict[str, object]:
    """The numbers a measurement report holds (the inverse of ``report_measurements``)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm_codes

    coded = _codes()
    content = hd.sr.srread(str(path)).content
    values = dict(enumerate(TUMOUR_SEGMENTS, start=1))
    found: dict[str, object] = {"volume_ml": {}, "prediction_set": None, "rcbv_mean": None, "rcbv_p95": None}
    for group in content.get_volumetric_roi_measurement_groups():
        number = int(group.referenced_segment[0].ReferencedSOPSequence[0].ReferencedSegmentNumber)
        for measurement in group.get_measurements(name=coded["volume"]):
            found["volume_ml"][values[number]] = float(measurement.value)
    for group in content.get_image_measurement_groups():
        for measurement in group.get_measurements():
            if measurement.name == coded["rcbv"]:
                found["rcbv_mean" if measurement.derivation == coded["mean"] else "rcbv_p95"] = float(measurement.value)
            elif measurement.name == coded["probability"]:
                found["idh_mutant_probability"] = float(measurement.value)
        for evaluation in group.get_qualitative_evaluations(name=coded["prediction_set"]):
            found["prediction_set"] = next(k for k, v in coded["set_values"].items() if v == evaluation.value)
        found["statement"] = next((item.TextValue for item in group[0].ContentSequence if item.ValueType == "TEXT"
                                   and item.ConceptNameCodeSequence[0].CodeValue == dcm_codes.DCM.Comment.value), None)
    return found
