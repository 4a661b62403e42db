"""The MRML bridge and the module's scene workflow on a real ``vtkMRMLScene`` (slicer-core wheel)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install -e '.[test]')")
vtk = pytest.importorskip("vtk")

from IDHPredictorLib import scene_workflow as workflow  # noqa: E402
from IDHPredictorLib import slicer_bridge as bridge  # noqa: E402
from IDHPredictorLib.errors import InputError  # noqa: E402
from IDHPredictorLib.io.case import read_case  # noqa: E402
from IDHPredictorLib.io.cohort import brats_case_folders, case_folders  # noqa: E402
from IDHPredictorLib.segmentation.inference import segment_case  # noqa: E402
from IDHPredictorLib.segmentation.model_bundle import default_bundle_for, load_model  # noqa: E402


def _ras_of_index(node, ijk: tuple[int, int, int]) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array(matrix.MultiplyPoint((*ijk, 1.0))[:3])


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (0.3, -0.2, 0.5)], ids=["axial", "oblique"])
def test_volume_geometry_round_trip(angles: tuple[float, float, float]) -> None:
    array = np.random.default_rng(0).normal(size=(7, 9, 11)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetDirection(sitk.Euler3DTransform((0, 0, 0), *angles).GetMatrix())
    image.SetOrigin((10.5, -3.25, 7.0))
    image.SetSpacing((0.9, 1.1, 3.0))
    scene = slicer.vtkMRMLScene()
    node = bridge.volume_node_from_image(scene, image, "volume")
    back = bridge.image_from_volume_node(node)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-12)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-12)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)
    # the same voxel sits at the same physical point: Slicer's RAS is ITK's LPS with x and y negated
    lps = np.array(image.TransformIndexToPhysicalPoint((3, 4, 5)))
    np.testing.assert_allclose(_ras_of_index(node, (3, 4, 5)), lps * [-1, -1, 1], atol=1e-9)


@pytest.fixture(scope="module")
def loaded(small_cohort: Path):
    """A scene with the first small phantom case that has enhancing tumour (the editing test erases
    part of it) loaded and segmented through the bridge."""
    scene = slicer.vtkMRMLScene()
    case_dir = next(p for p in sorted(small_cohort.iterdir()) if p.is_dir()
                    and (sitk.GetArrayFromImage(sitk.ReadImage(str(p / f"{p.name}_seg.nii.gz"))) == 4).any())
    scene_case = workflow.load_case(scene, case_dir)
    workflow.segment(scene, scene_case)
    return scene, scene_case, case_dir


def test_segmentation_node_matches_the_library_voxel_for_voxel(loaded) -> None:
    scene, scene_case, case_dir = loaded
    bundle = default_bundle_for(set(scene_case.volumes))
    model = load_model(bundle)
    case = read_case(case_dir, model.modalities, dsc=False)
    expected = sitk.GetArrayFromImage(segment_case(model.network, model.modalities, case,
                                                   min_enhancing_ml=model.min_enhancing_ml))
    assert expected.any()
    labels = bridge.labels_from_segmentation_node(scene_case.segmentation, scene_case.reference)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), expected)
    assert labels.GetOrigin() == case.reference.GetOrigin() and labels.GetDirection() == case.reference.GetDirection()
    # the tumour's centre, read through the node's IJK-to-RAS, is where ITK puts it
    centre_zyx = np.argwhere(expected == 4).mean(axis=0) if (expected == 4).any() else np.argwhere(expected).mean(axis=0)
    lps = np.array(case.reference.TransformContinuousIndexToPhysicalPoint(tuple(centre_zyx[::-1])))
    matrix = vtk.vtkMatrix4x4()
    scene_case.reference.GetIJKToRASMatrix(matrix)
    ras = np.array(matrix.MultiplyPoint((*centre_zyx[::-1], 1.0))[:3])
    np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-6)


def test_segments_are_named_coloured_and_coded(loaded) -> None:
    segmentation = loaded[1].segmentation.GetSegmentation()
    names = {segmentation.GetNthSegment(i).GetName(): segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())}
    assert set(names) == {"Necrotic and non-enhancing core", "Oedema", "Enhancing tumour"}
    entry = vtk.reference("")
    names["Oedema"].GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), entry)
    assert "79654002" in str(entry) and "Edema" in str(entry)
    assert names["Enhancing tumour"].GetColor() == pytest.approx(bridge.TUMOUR_SEGMENTS[4][1])


def _erase_upper_half_of_enhancing(scene, scene_case) -> int:
    """Do what an eraser in the Segment Editor does: clear part of one segment in place."""
    node = scene_case.segmentation
    segment_id = node.GetSegmentation().GetSegmentIdBySegmentName("Enhancing tumour")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(node, ids, labelmap, scene_case.reference)
    array = bridge.array_from_volume_node(labelmap)
    zs = np.flatnonzero(array.any(axis=(1, 2)))
    before = int((array > 0).sum())
    array[zs[len(zs) // 2]:] = 0
    edited = bridge.volume_node_from_image(scene, sitk.GetImageFromArray(array), "edited", "vtkMRMLLabelMapVolumeNode", display=False)
    edited.CopyOrientation(labelmap)
    oriented = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(edited)
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        oriented, node, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    scene.RemoveNode(labelmap)
    scene.RemoveNode(edited)
    return before - int((array > 0).sum())


def test_edited_segment_changes_dlr_and_rcbv(loaded) -> None:
    scene, scene_case, _ = loaded
    dlr = dict(workflow.compute_dlr(scene_case))
    perfusion = workflow.compute_perfusion(scene, scene_case)
    enhancing_before = int((sitk.GetArrayFromImage(workflow.case_from_nodes(scene_case).labels) == 4).sum())
    erased = _erase_upper_half_of_enhancing(scene, scene_case)
    assert erased > 0
    labels = sitk.GetArrayFromImage(workflow.case_from_nodes(scene_case).labels)
    assert int((labels == 4).sum()) == enhancing_before - erased
    assert workflow.compute_dlr(scene_case)["decision_value"] != dlr["decision_value"]
    after = workflow.compute_perfusion(scene, scene_case)
    assert after.result["rcbv"]["rcbv_mean"] != perfusion.result["rcbv"]["rcbv_mean"]


def test_table_plot_and_rcbv_nodes_hold_the_library_values(loaded) -> None:
    scene, scene_case, _ = loaded
    prediction = workflow.compute_perfusion(scene, scene_case)
    workflow.compute_dlr(scene_case)
    fused = workflow.compute_fusion(scene, scene_case, 47.0)  # the shipped fusion bundle's own components
    assert fused["inputs_used"] == ["DLR", "perfusion LSTM", "age"] and fused["mask"].startswith("segmentation node")
    table = workflow.results_table(scene, scene_case, age=47.0).GetTable()
    rows = {table.GetValue(r, 0).ToString(): table.GetValue(r, 1).ToString() for r in range(table.GetNumberOfRows())}
    assert rows["dlr.idh_mutant_probability"] == f"{scene_case.results['dlr']['idh_mutant_probability']:.4g}"
    assert rows["fusion.prediction_set"] == fused["prediction_set"]
    assert rows["perfusion.temporal_pattern"] == prediction.result["temporal_pattern"]
    assert rows["patient_age"] == "47"
    charts = scene.GetNodesByClassByName("vtkMRMLPlotChartNode", f"{scene_case.case_id} perfusion")
    assert charts.GetNumberOfItems() == 1  # re-running perfusion replaced the earlier chart
    chart = charts.GetItemAsObject(0)
    series = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    assert len(series) == sum(prediction.curves.present) + 1
    assert series[-1].GetYColumnName() == "attention" and series[-1].GetPlotType() == series[-1].PlotTypeBar
    curve_table = series[0].GetTableNode().GetTable()
    column = np.array([curve_table.GetValue(r, 1).ToDouble() for r in range(curve_table.GetNumberOfRows())])
    first = int(np.flatnonzero(prediction.curves.present)[0])
    np.testing.assert_allclose(column, prediction.curves.curves[first], rtol=1e-6)
    attention = np.array([curve_table.GetValue(r, curve_table.GetNumberOfColumns() - 1).ToDouble()
                          for r in range(curve_table.GetNumberOfRows())])
    assert np.argmax(attention) == np.argmax(prediction.attention)  # the band peaks where the attention does
    assert scene.GetNodesByClassByName("vtkMRMLScalarVolumeNode", f"{scene_case.case_id} rCBV").GetNumberOfItems() == 1
    rcbv_node = scene.GetFirstNodeByName(f"{scene_case.case_id} rCBV")
    np.testing.assert_allclose(bridge.array_from_volume_node(rcbv_node), prediction.analysis.rcbv)
    assert rcbv_node.GetDisplayNode().GetColorNodeID()


def test_dsc_from_sequence_and_multivolume_nodes(small_cohort: Path) -> None:
    case = read_case(case_folders(small_cohort)[0])
    scene = slicer.vtkMRMLScene()
    sequence = bridge.dsc_sequence_node_from_series(scene, case.dsc, "dsc")
    series = bridge.dsc_series_from_node(sequence)
    assert (series.repetition_time_s, series.echo_time_s) == pytest.approx((case.dsc.repetition_time_s, case.dsc.echo_time_s))
    np.testing.assert_array_equal(series.frames, case.dsc.frames)
    assert series.frame_geometry().GetOrigin() == pytest.approx(case.dsc.frame_geometry().GetOrigin())
    # TR from the numeric time index alone (ms)
    in_ms = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "dsc ms")
    in_ms.SetIndexUnit("ms")
    for i in range(sequence.GetNumberOfDataNodes()):
        in_ms.SetDataNodeAtValue(sequence.GetNthDataNode(i), f"{float(sequence.GetNthIndexValue(i)) * 1000:g}")
    assert bridge.dsc_series_from_node(in_ms, echo_time_s=0.03).repetition_time_s == pytest.approx(case.dsc.repetition_time_s)
    # a multi-volume node: one scalar component per frame, timing in MultiVolume attributes (ms)
    frames = np.moveaxis(case.dsc.frames, 0, -1)
    geometry = case.dsc.frame_geometry()
    vector = sitk.GetImageFromArray(frames, isVector=True)
    vector.CopyInformation(geometry)
    multivolume = bridge.volume_node_from_image(scene, vector, "multivolume", display=False)
    multivolume.SetAttribute("MultiVolume.DICOM.RepetitionTime", f"{case.dsc.repetition_time_s * 1000:g}")
    multivolume.SetAttribute("MultiVolume.DICOM.EchoTime", f"{case.dsc.echo_time_s * 1000:g}")
    series = bridge.dsc_series_from_node(multivolume)
    np.testing.assert_array_equal(series.frames, case.dsc.frames)
    assert series.echo_time_s == pytest.approx(case.dsc.echo_time_s)
    multivolume.RemoveAttribute("MultiVolume.DICOM.RepetitionTime")
    with pytest.raises(InputError, match="TR unknown"):
        bridge.dsc_series_from_node(multivolume)


def test_a_dual_echo_case_keeps_both_echoes_in_the_scene(dual_echo_cohort: Path) -> None:
    folder = case_folders(dual_echo_cohort)[0]
    case = read_case(folder, ("t1ce",), labels=False, dsc=True)
    scene = slicer.vtkMRMLScene()
    scene_case = workflow.load_case(scene, folder)
    assert scene_case.dsc_short is not None and scene_case.dsc_short.GetName().endswith("_dsc-short")
    dsc = workflow.dsc_from_nodes(scene_case)
    assert dsc.dual_echo and dsc.short_echo_time_s == pytest.approx(case.dsc.short_echo_time_s)
    np.testing.assert_array_equal(dsc.short_frames, case.dsc.short_frames)
    np.testing.assert_array_equal(dsc.frames, case.dsc.frames)


def test_aif_points_map_to_dsc_voxels(small_cohort: Path) -> None:
    case = read_case(case_folders(small_cohort)[0])
    geometry = case.dsc.frame_geometry()
    scene = slicer.vtkMRMLScene()
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "AIF")
    wanted = [(5, 20, 30), (6, 21, 31)]  # (z, y, x)
    for z, y, x in wanted:
        lps = np.array(geometry.TransformIndexToPhysicalPoint((x, y, z)))
        points.AddControlPointWorld(vtk.vtkVector3d(*(lps * [-1, -1, 1])))
    np.testing.assert_array_equal(bridge.aif_voxels_from_markups(points, case.dsc), wanted)
    points.AddControlPointWorld(vtk.vtkVector3d(1e4, 0.0, 0.0))
    with pytest.raises(InputError, match="outside the DSC field of view"):
        bridge.aif_voxels_from_markups(points, case.dsc)


def test_unknown_segment_is_refused_with_the_fix(loaded) -> None:
    scene, scene_case, _ = loaded
    segmentation = scene_case.segmentation.GetSegmentation()
    extra = segmentation.AddEmptySegment("", "Scratch")
    try:
        with pytest.raises(InputError, match="Rename it"):
            bridge.labels_from_segmentation_node(scene_case.segmentation, scene_case.reference)
    finally:
        segmentation.RemoveSegment(extra)


def test_process_cohort_writes_reports_and_keeps_going(small_cohort: Path, tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    cases = case_folders(small_cohort)[:2]
    for case_dir in cases:
        shutil.copytree(case_dir, cohort / case_dir.name)
    broken = cohort / "BROKEN"
    broken.mkdir()
    (broken / "notes.txt").write_text("no images here")
    scene = slicer.vtkMRMLScene()
    summary = workflow.process_cohort(scene, cohort, tmp_path / "out")
    assert [entry["case_id"] for entry in summary] == ["BROKEN", *(c.name for c in cases)]
    assert "no recognisable modality file" in summary[0]["error"]
    for entry in summary[1:]:
        report = tmp_path / "out" / entry["case_id"]
        saved = json.loads((report / "result.json").read_text())
        assert saved["dlr"]["idh_mutant_probability"] == entry["dlr"]["idh_mutant_probability"]
        assert {"segmentation.png", "attention.png", f"{entry['case_id']}_seg.nii.gz"} <= {p.name for p in report.iterdir()}
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == json.loads(json.dumps(summary))
    kinds = {scene.GetNthNode(i).GetClassName() for i in range(scene.GetNumberOfNodes())}
    assert "vtkMRMLScalarVolumeNode" not in kinds and scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 2


def test_a_real_case_round_trips_through_the_scene(realdata: Path) -> None:
    case_dir = brats_case_folders(realdata)[0]
    case = read_case(case_dir, dsc=False)
    scene = slicer.vtkMRMLScene()
    scene_case = workflow.load_case(scene, case_dir)
    back = workflow.case_from_nodes(scene_case)
    for role, image in case.images.items():
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back.images[role]), sitk.GetArrayFromImage(image))
        assert back.images[role].GetOrigin() == image.GetOrigin() and back.images[role].GetDirection() == image.GetDirection()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back.labels), sitk.GetArrayFromImage(case.labels))


def test_dlr_panel_lines_read_the_bundles_validation_metrics() -> None:
    import json

    from IDHPredictorLib.dlr.predict import DEFAULT_DLR_MODEL, describe_prediction

    metrics = json.loads((DEFAULT_DLR_MODEL / "model.json").read_text())["metrics"]
    result = {"idh_mutant_probability": 0.123, "predicted_class": "wildtype", "model_metrics": metrics,
              "top_features": [{"feature": "conv6 filter 8, component 53, mean", "contribution": -0.28, "towards": "wildtype"}]}
    lines = describe_prediction(result)
    auc = metrics["loocv_simulated"]["auc"]
    assert lines["prediction"] == "IDH-mutant probability 0.12 (wildtype)"
    assert f"{auc['value']:.4f} ({auc['ci_low']:.2f}-{auc['ci_high']:.2f}) (loocv, simulated, the cohort's reference masks)" in lines["validation"]
    assert lines["features"] == "conv6 filter 8, component 53, mean (towards wildtype)"
    assert "not recorded" in describe_prediction({**result, "model_metrics": {}})["validation"]


def test_perfusion_panel_line_reads_the_bundles_validation_and_calibration() -> None:
    import json

    from IDHPredictorLib.perfusion.model_bundle import DEFAULT_PERFUSION_MODEL, describe_perfusion

    record = json.loads((DEFAULT_PERFUSION_MODEL / "model.json").read_text())
    result = {"idh_mutant_probability": 0.317, "predicted_class": "wildtype", "temporal_pattern": "TP4",
              "rcbv": {"rcbv_mean": 1.234, "rcbv_p95": 3.5}, "model_metrics": record["metrics"],
              "calibration": record["calibration"]}
    line = describe_perfusion(result)
    validation = record["calibration"]["cv_simulated"]
    assert line.startswith("IDH-mutant probability 0.32 (calibrated; wildtype); temporal pattern TP4; rCBV mean 1.23")
    assert f"({validation['patients']} simulated patients, 5-fold CV, reference masks)" in line
    assert f"Brier {validation['brier']:.3f}, ECE {validation['ece']:.3f}" in line
    assert "Model validation" not in describe_perfusion({**result, "calibration": {}})
    # the series' DSC verdicts show where the rCBV does
    flagged = {**result, "dsc_quality": {"verdict": "warn", "checks": [
        {"name": "dsc_t1_leakage", "verdict": "warn", "message": "the tumour signal rises 24% above its baseline", "value": 0.24}]}}
    assert "[WARN] dsc t1 leakage: the tumour signal rises 24% above its baseline" in describe_perfusion(flagged)


def test_raw_volumes_in_the_scene_are_prepared_and_segmented(realdata: Path) -> None:
    """The raw TCGA-FG-6692 series (skull, 5.5 mm, one grid each) as volume nodes, the way they
    arrive from DICOM: the workflow co-registers, skull-strips and segments them, and puts the
    labels on the T1c node's own grid with the quality verdicts in the results table."""
    case_dir = realdata / "raw" / "TCGA-FG-6692" / "native"
    if not case_dir.is_dir():
        pytest.skip(f"{case_dir} not found")
    scene = slicer.vtkMRMLScene()
    scene_case = workflow.load_case(scene, case_dir)
    scene_case.volumes = {role: scene_case.volumes[role] for role in ("flair", "t1ce")}
    workflow.segment(scene, scene_case)
    t1ce = bridge.image_from_volume_node(scene_case.volumes["t1ce"])
    labels = bridge.labels_from_segmentation_node(scene_case.segmentation, scene_case.volumes["t1ce"])
    assert labels.GetSize() == t1ce.GetSize() and labels.GetSpacing() == pytest.approx(t1ce.GetSpacing())
    whole_ml = np.count_nonzero(sitk.GetArrayFromImage(labels)) * np.prod(t1ce.GetSpacing()) / 1000
    assert 10 < whole_ml < 60  # fused labels of this patient: 30.2 mL; measured 15.7 mL
    quality = scene_case.results["quality"]
    assert quality["input"] == "raw, with skull and scalp" and "skull strip" in quality["steps"]
    table = workflow.results_table(scene, scene_case)
    rows = {table.GetTable().GetValue(i, 0).ToString() for i in range(table.GetTable().GetNumberOfRows())}
    assert any("brain_volume" in row for row in rows)
