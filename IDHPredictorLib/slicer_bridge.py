"""MRML bridge: Slicer scene nodes <-> the library's SimpleITK images, label maps and results.

The only library module that imports ``slicer``. Every function takes the scene (or nodes) as a
parameter and never touches ``slicer.mrmlScene``, ``slicer.modules`` or Qt, so it runs on a bare
``vtkMRMLScene`` from the ``slicer-core`` wheel as well as inside Slicer.

Geometry: Slicer stores IJK-to-RAS, ITK stores origin/spacing/direction in LPS. RAS = F * LPS with
F = diag(-1, -1, 1), so origin_RAS = F * origin_LPS and directions_RAS = F * directions_LPS
(columns are the axis directions). Nothing is resampled: voxel values are copied as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from .errors import InputError
from .io.dsc import DscSeries, check_timing
from .io.terminology import SEGMENT_CATEGORY, TUMOUR_SEGMENTS

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
LABEL_TAG = "IDHPredictor.BraTSLabel"
TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
# Low rCBV cold (blue/violet), high hot (red); MRML's plain Rainbow runs the other way, red first.
RCBV_COLOUR_NODES = ("vtkMRMLColorTableNodeFileColdToHotRainbow.txt", "vtkMRMLColorTableNodeReverseRainbow")
RCBV_SHOWN_FROM = 0.05  # below this (outside the brain, where the map is 0) the overlay is transparent


# --- volumes --------------------------------------------------------------------------------

def _ras_geometry(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(origin, 3x3 direction) of ``image`` in RAS."""
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    return LPS_TO_RAS @ np.asarray(image.GetOrigin(), float), LPS_TO_RAS @ direction


def _set_geometry(node: slicer.vtkMRMLVolumeNode, image: sitk.Image) -> None:
    origin, direction = _ras_geometry(image)
    matrix = vtk.vtkMatrix4x4()
    for row in range(3):
        for column in range(3):
            matrix.SetElement(row, column, direction[row, column])
    node.SetIJKToRASDirectionMatrix(matrix)
    node.SetOrigin(*origin)
    node.SetSpacing(*image.GetSpacing()[:3])


def _image_data(array: np.ndarray) -> vtk.vtkImageData:
    """vtkImageData of a (z, y, x) or (z, y, x, components) array (x runs fastest in both)."""
    components = array.shape[3] if array.ndim == 4 else 1
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(array).reshape(-1, components), deep=True)
    image_data.GetPointData().SetScalars(scalars)
    return image_data


def volume_node_from_image(scene: slicer.vtkMRMLScene, image: sitk.Image, name: str,
                           class_name: str = "vtkMRMLScalarVolumeNode", display: bool = True) -> slicer.vtkMRMLVolumeNode:
    """A new volume node holding a 3-D ``image`` (scalar or vector pixels) at its exact geometry
    (``display=False`` for scratch nodes that are never shown)."""
    if image.GetDimension() != 3:
        raise InputError(None, f"{name}: a volume node needs a 3-D image, got {image.GetDimension()}-D",
                         "Pass one frame, or use dsc_sequence_node_from_series for a 4-D series")
    node = scene.AddNewNodeByClass(class_name, name)
    node.SetAndObserveImageData(_image_data(sitk.GetArrayFromImage(image)))
    _set_geometry(node, image)
    if display:
        node.CreateDefaultDisplayNodes()
    return node


def array_from_volume_node(node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """Voxel array (z, y, x) or (z, y, x, components), a copy."""
    image_data = node.GetImageData() if node is not None else None
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        name = node.GetName() if node is not None else "volume"
        raise InputError(None, f"{name} holds no image data", "Select a loaded volume")
    x, y, z = image_data.GetDimensions()
    components = image_data.GetNumberOfScalarComponents()
    array = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars()).copy()
    return array.reshape((z, y, x, components) if components > 1 else (z, y, x))


def image_from_volume_node(node: slicer.vtkMRMLVolumeNode) -> sitk.Image:
    """SimpleITK image (LPS geometry) of a scalar or vector volume node. Parent transforms are
    not applied: harden them first (the library works in each node's own space)."""
    array = array_from_volume_node(node)
    image = sitk.GetImageFromArray(array, isVector=array.ndim == 4)
    _copy_node_geometry(node, image)
    return image


def _copy_node_geometry(node: slicer.vtkMRMLVolumeNode, image: sitk.Image) -> None:
    """Give ``image`` the node's origin, spacing and direction, converted to LPS."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(matrix)
    direction = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
    image.SetOrigin(tuple(LPS_TO_RAS @ np.asarray(node.GetOrigin(), float)))
    image.SetSpacing(node.GetSpacing())
    image.SetDirection(tuple((LPS_TO_RAS @ direction).ravel()))


# --- DSC series -----------------------------------------------------------------------------

def _seconds(value: str | float | None, unit: str | None) -> float | None:
    if value in (None, ""):
        return None
    return float(value) / 1000.0 if (unit or "ms").lower() in ("ms", "msec", "millisecond") else float(value)


def dsc_series_from_node(node: slicer.vtkMRMLNode, repetition_time_s: float | None = None,
                         echo_time_s: float | None = None, short_echo: bool = False) -> DscSeries:
    """A DSC series from a sequence node of 3-D volumes or a multi-component (MultiVolume) node.

    TR/TE: the arguments, else the node's ``MultiVolume.DICOM.RepetitionTime`` / ``EchoTime``
    attributes (ms, as Slicer's DICOM multi-volume importer writes them), else (TR only) the
    spacing of the sequence's numeric time index (its unit, s or ms). ``short_echo``: the node is a
    dual-echo series' short echo (TE down to 1 ms accepted).
    """
    name = node.GetName()
    source = Path(f"<scene node {name}>")
    attribute_tr = _seconds(node.GetAttribute("MultiVolume.DICOM.RepetitionTime"), "ms")
    attribute_te = _seconds(node.GetAttribute("MultiVolume.DICOM.EchoTime"), "ms")
    if node.IsA("vtkMRMLSequenceNode"):
        frames = [node.GetNthDataNode(i) for i in range(node.GetNumberOfDataNodes())]
        if not frames or not all(f is not None and f.IsA("vtkMRMLScalarVolumeNode") for f in frames):
            raise InputError(source, "sequence does not hold scalar volumes", "Select the DSC sequence")
        images = [sitk.Cast(image_from_volume_node(f), sitk.sitkFloat32) for f in frames]
        index_tr = None
        if node.GetIndexType() == node.NumericIndex and len(frames) > 1:
            times = [_seconds(node.GetNthIndexValue(i), node.GetIndexUnit()) for i in range(len(frames))]
            index_tr = float(np.mean(np.diff(times)))
        tr = repetition_time_s or attribute_tr or index_tr
        series = sitk.JoinSeries(images, 0.0, tr or 1.0)
    elif node.IsA("vtkMRMLScalarVolumeNode"):
        image = image_from_volume_node(node)
        if image.GetNumberOfComponentsPerPixel() < 2:
            raise InputError(source, "is a 3-D volume, not a DSC time series",
                             "Load the DSC series as a sequence or a multi-volume")
        tr = repetition_time_s or attribute_tr
        frames3d = [sitk.Cast(sitk.VectorIndexSelectionCast(image, i), sitk.sitkFloat32)
                    for i in range(image.GetNumberOfComponentsPerPixel())]
        series = sitk.JoinSeries(frames3d, 0.0, tr or 1.0)
    else:
        raise InputError(source, f"{node.GetClassName()} is not a DSC series", "Select a sequence or multi-volume node")
    if tr is None:
        raise InputError(source, "TR unknown", "Give the repetition time (s) in the Perfusion panel")
    te = echo_time_s or attribute_te
    check_timing(source, float(tr), te, series.GetSize()[3], dual_echo=short_echo)
    return DscSeries(series, float(tr), te, source)


def dsc_sequence_node_from_series(scene: slicer.vtkMRMLScene, series: DscSeries, name: str) -> slicer.vtkMRMLSequenceNode:
    """A sequence node of the series' frames, time index in seconds, TR/TE kept as attributes."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    sequence.SetIndexType(sequence.NumericIndex)
    size = list(series.image.GetSize())
    for frame, when in enumerate(series.times_s):
        image = sitk.Extract(series.image, [*size[:3], 0], [0, 0, 0, frame])
        volume = slicer.vtkMRMLScalarVolumeNode()
        volume.SetAndObserveImageData(_image_data(sitk.GetArrayFromImage(image)))
        _set_geometry(volume, image)
        sequence.SetDataNodeAtValue(volume, f"{when:g}")
    sequence.SetAttribute("MultiVolume.DICOM.RepetitionTime", f"{series.repetition_time_s * 1000:g}")
    if series.echo_time_s is not None:
        sequence.SetAttribute("MultiVolume.DICOM.EchoTime", f"{series.echo_time_s * 1000:g}")
    return sequence


# --- segmentation ---------------------------------------------------------------------------

def _terminology(type_code: str, type_meaning: str) -> str:
    category_code, scheme, category_meaning = SEGMENT_CATEGORY
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        TERMINOLOGY_CONTEXT, category_code, scheme, category_meaning, type_code, "SCT", type_meaning,
        "", "", "", "Anatomic codes - DICOM master list", "", "", "", "", "", "")


def segmentation_node_from_labels(scene: slicer.vtkMRMLScene, labels: sitk.Image,
                                  reference_node: slicer.vtkMRMLVolumeNode, name: str) -> slicer.vtkMRMLSegmentationNode:
    """A segmentation node with the three BraTS tumour segments (named, coloured, standard
    terminology) from a 1/2/4 label map; empty regions become empty segments."""
    unknown = set(np.unique(sitk.GetArrayViewFromImage(labels)).tolist()) - {0, *TUMOUR_SEGMENTS}
    if unknown:
        raise InputError(None, f"label values {sorted(unknown)} are not BraTS tumour labels", "Use 1, 2 and 4")
    labelmap = volume_node_from_image(scene, sitk.Cast(labels, sitk.sitkUInt8), f"{name} labels",
                                      "vtkMRMLLabelMapVolumeNode", display=False)
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node):
            raise InputError(None, f"{name}: the label map could not be imported", "Check the label map's geometry")
    finally:
        scene.RemoveNode(labelmap)
    segmentation = segmentation_node.GetSegmentation()
    by_value = {segmentation.GetNthSegment(i).GetLabelValue(): segmentation.GetNthSegmentID(i)
                for i in range(segmentation.GetNumberOfSegments())}
    for value, (segment_name, colour, code, meaning) in TUMOUR_SEGMENTS.items():
        segment_id = by_value.get(value) or segmentation.AddEmptySegment("", segment_name, colour)
        segment = segmentation.GetSegment(segment_id)
        segment.SetName(segment_name)
        segment.SetColor(*colour)
        segment.SetTag(LABEL_TAG, str(value))
        segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), _terminology(code, meaning))
    return segmentation_node


def _brats_value(segment: slicer.vtkSegment) -> int:
    """The BraTS label a segment stands for: its tag, else its name (segments made by hand)."""
    tag = vtk.reference("")
    if segment.GetTag(LABEL_TAG, tag) and str(tag).isdigit():
        return int(str(tag))
    by_name = {info[0].lower(): value for value, info in TUMOUR_SEGMENTS.items()}
    value = by_name.get(segment.GetName().strip().lower())
    if value is None:
        names = ", ".join(f"'{info[0]}'" for info in TUMOUR_SEGMENTS.values())
        raise InputError(None, f"segment '{segment.GetName()}' is not a tumour sub-region",
                         f"Rename it to one of {names}, or delete it")
    return value


def labels_from_segmentation_node(segmentation_node: slicer.vtkMRMLSegmentationNode,
                                  reference_node: slicer.vtkMRMLVolumeNode) -> sitk.Image:
    """BraTS label map (UInt8, 1/2/4) on ``reference_node``'s grid from the (possibly edited)
    segments. Overlaps resolve as core over oedema, enhancing over both."""
    scene = segmentation_node.GetScene()
    segmentation = segmentation_node.GetSegmentation()
    if reference_node.GetImageData() is None:
        raise InputError(None, f"{reference_node.GetName()} holds no image data", "Select a loaded volume")
    x, y, z = reference_node.GetImageData().GetDimensions()
    labels = np.zeros((z, y, x), np.uint8)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "IDHPredictor export")
    try:
        segments = [(_brats_value(segmentation.GetNthSegment(i)), segmentation.GetNthSegmentID(i))
                    for i in range(segmentation.GetNumberOfSegments())]
        for value, segment_id in sorted(segments, key=lambda item: (item[0] != 2, item[0])):  # oedema, core, enhancing
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segment_id)
            slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, ids, labelmap, reference_node)
            if labelmap.GetImageData() is not None and labelmap.GetImageData().GetPointData().GetScalars() is not None:
                labels[array_from_volume_node(labelmap) > 0] = value
    finally:
        scene.RemoveNode(labelmap)
    image = sitk.GetImageFromArray(labels)
    _copy_node_geometry(reference_node, image)
    return image


# --- markups, tables, plots, maps ------------------------------------------------------------

def aif_voxels_from_markups(markups_node: slicer.vtkMRMLMarkupsNode, dsc: DscSeries) -> np.ndarray:
    """(n, 3) DSC voxel indices (z, y, x) of the markups control points (world RAS)."""
    geometry = dsc.frame_geometry()
    size = np.array(geometry.GetSize())
    voxels = []
    for i in range(markups_node.GetNumberOfControlPoints()):
        ras = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(i, ras)
        lps = LPS_TO_RAS @ np.asarray(ras)
        index = np.round(geometry.TransformPhysicalPointToContinuousIndex(tuple(lps))).astype(int)
        if np.any(index < 0) or np.any(index >= size):
            raise InputError(None, f"AIF point {markups_node.GetNthControlPointLabel(i) or i + 1} lies outside the DSC "
                             "field of view", "Move it onto an artery inside the DSC volume")
        voxels.append(index[::-1])
    if not voxels:
        raise InputError(None, f"{markups_node.GetName()} has no points", "Place at least one point on an artery")
    return np.asarray(voxels, int)


def flatten_results(results: Mapping[str, object], prefix: str = "") -> list[tuple[str, str]]:
    """(name, text) rows of nested results for a table; long vectors are left to the plots."""
    rows: list[tuple[str, str]] = []
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += flatten_results(value, f"{name}.")
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        elif isinstance(value, (list, tuple)) and len(value) > 8:
            continue  # long vectors (attention, curves) belong in plots, not in the table
        else:
            rows.append((name, str(value)))
    return rows


def table_node_from_results(scene: slicer.vtkMRMLScene, results: Mapping[str, object], name: str) -> slicer.vtkMRMLTableNode:
    """A two-column (quantity, value) table node of a (nested) result dictionary, replaced in
    place when a table of that name exists so re-running updates the patient's one table."""
    node = scene.GetFirstNodeByName(name)
    if node is None or not node.IsA("vtkMRMLTableNode"):
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = vtk.vtkTable()
    for column in ("Quantity", "Value"):
        array = vtk.vtkStringArray()
        array.SetName(column)
        table.AddColumn(array)
    for quantity, value in flatten_results(results):
        table.InsertNextBlankRow()
        table.SetValue(table.GetNumberOfRows() - 1, 0, vtk.vtkVariant(quantity))
        table.SetValue(table.GetNumberOfRows() - 1, 1, vtk.vtkVariant(value))
    node.SetAndObserveTable(table)
    return node


def _double_column(name: str, values: np.ndarray) -> vtk.vtkDoubleArray:
    array = numpy_support.numpy_to_vtk(np.asarray(values, np.float64), deep=True)
    array.SetName(name)
    return array


def _remove_named(scene: slicer.vtkMRMLScene, class_name: str, name: str) -> None:
    """Remove earlier output nodes of this name (and a chart's series and table), so re-running a
    step replaces its display instead of piling up copies."""
    nodes = scene.GetNodesByClassByName(class_name, name)
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.IsA("vtkMRMLPlotChartNode"):
            series = [node.GetNthPlotSeriesNode(j) for j in range(node.GetNumberOfPlotSeriesNodes())]
            for table in {s.GetTableNode() for s in series if s.GetTableNode() is not None}:
                scene.RemoveNode(table)
            for item in series:
                scene.RemoveNode(item)
        scene.RemoveNode(node)


def plot_curves(scene: slicer.vtkMRMLScene, grid_s: np.ndarray, curves: np.ndarray, channels: Sequence[str],
                attention: np.ndarray, name: str) -> slicer.vtkMRMLPlotChartNode:
    """Chart of one line per curve ((channels, frames) z-scored signal) over time, with the
    attention as a bar series scaled into a band below the curves (the heat band). Replaces an
    earlier chart of the same name."""
    _remove_named(scene, "vtkMRMLPlotChartNode", name)
    table = vtk.vtkTable()
    table.AddColumn(_double_column("time (s)", grid_s))
    for channel, curve in zip(channels, curves):
        table.AddColumn(_double_column(channel, curve))
    low, high = float(np.min(curves)), float(np.max(curves))
    band = 0.25 * (high - low or 1.0)
    weight = np.asarray(attention, float) / (np.max(attention) or 1.0)
    table.AddColumn(_double_column("attention", low - band + band * weight))
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} curves")
    table_node.SetAndObserveTable(table)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetXAxisTitle("time from bolus arrival (s)")
    chart.SetYAxisTitle("signal (z-score)")
    palette = ((0.95, 0.8, 0.1), (0.85, 0.3, 0.25), (0.3, 0.7, 0.3), (0.2, 0.4, 0.85), (0.55, 0.2, 0.6))
    for index, column in enumerate([*channels, "attention"]):
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {column}")
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName("time (s)")
        series.SetYColumnName(column)
        if column == "attention":
            series.SetPlotType(series.PlotTypeBar)
            series.SetColor(1.0, 0.45, 0.0)
            series.SetOpacity(0.6)
        else:
            series.SetPlotType(series.PlotTypeLine)
            series.SetMarkerStyle(series.MarkerStyleNone)
            series.SetColor(*palette[index % len(palette)])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def rcbv_map_node(scene: slicer.vtkMRMLScene, rcbv: sitk.Image, name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """The rCBV map as a volume node shown with a cold-to-hot colour map, window 0-5, transparent
    where there is no map (replacing an earlier map of the same name)."""
    _remove_named(scene, "vtkMRMLScalarVolumeNode", name)
    node = volume_node_from_image(scene, rcbv, name)
    colour = next((scene.GetNodeByID(i) for i in RCBV_COLOUR_NODES if scene.GetNodeByID(i) is not None), None)
    if colour is None:  # a bare scene (no default colour nodes): make the rainbow table
        colour = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "rCBV colours")
        colour.SetTypeToReverseRainbow()
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(colour.GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 5.0)
    display.SetApplyThreshold(True)
    display.SetThreshold(RCBV_SHOWN_FROM, float(np.finfo(np.float32).max))
    return node
