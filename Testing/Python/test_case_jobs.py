"""Case jobs and the job lifecycle both front ends share, on a real MRML scene with real child
processes: segment -> poll -> finish, cancel, a failing job, the job's case staying its own when
the selection changes or the front end is left, results saved with the scene, the model catalogue."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install -e '.[test]')")

from IDHPredictorLib import catalog  # noqa: E402
from IDHPredictorLib import scene_workflow as workflow  # noqa: E402
from IDHPredictorLib import slicer_bridge as bridge  # noqa: E402
from IDHPredictorLib.case_jobs import DlrResult, SegmentationResult, start_dlr, start_segmentation  # noqa: E402
from IDHPredictorLib.errors import InputError  # noqa: E402
from IDHPredictorLib.io.cohort import case_folders  # noqa: E402
from IDHPredictorLib.job_controller import JobController  # noqa: E402


class RecordingView:
    """A front end's view that keeps what the controller told it (the widget's labels, in Slicer)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def show_busy(self, message):
        self.events.append(("busy", message))

    def show_progress(self, progress):
        self.events.append(("progress", progress))

    def show_result(self, result, case):
        self.events.append(("result", result))
        assert case.case_id == result.case_id

    def show_error(self, message, details):
        self.events.append(("error", (message, details)))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def _poll_until_done(controller: JobController, timeout_s: float = 240.0):
    deadline = time.monotonic() + timeout_s
    while controller.busy:
        assert time.monotonic() < deadline, "the job did not end"
        result = controller.poll()
        time.sleep(0.05)
    return result


def _selected(scene_case: workflow.SceneCase) -> workflow.SceneCase:
    """What a front end builds from its selection: the case's nodes, results read back from them."""
    return workflow.scene_case_from_nodes(scene_case.volumes, scene_case.segmentation, scene_case.dsc)


@pytest.fixture()
def two_cases(small_cohort: Path):
    scene = slicer.vtkMRMLScene()
    first, second = (workflow.load_case(scene, folder) for folder in case_folders(small_cohort)[:2])
    return scene, first, second


def test_segment_poll_finish_lands_on_the_jobs_own_case(two_cases) -> None:
    scene, first, second = two_cases
    second_labels = _array(second)
    view = RecordingView()
    controller = JobController(scene, view)
    job = controller.start(lambda: start_segmentation(_selected(first)), "Segmenting")
    assert controller.busy and not controller.allows("load") and not controller.allows("correct") and controller.allows("cancel")
    with pytest.raises(RuntimeError, match="job is running"):
        controller.start(lambda: start_segmentation(_selected(second)), "Segmenting")
    selection_now = _selected(second)  # the user selects the other case mid-job (and leaves the module)
    result = _poll_until_done(controller)

    assert isinstance(result, SegmentationResult) and result.case_id == first.case_id != selection_now.case_id
    assert result.verdict in ("pass", "warn") and result.to_json()["kind"] == "segmentation"
    assert view.kinds()[0] == "busy" and "progress" in view.kinds() and view.kinds()[-2:] == ["busy", "result"]
    assert job.case.segmentation.GetSegmentation().GetNumberOfSegments() == 3
    assert job.case.segmentation.GetName() == f"{first.case_id} tumour"
    # the other case's mask is untouched; the job's folder is gone
    np.testing.assert_array_equal(_array(second), second_labels)
    assert not job.workdir.exists() and controller.allows("load")
    # coming back to the module: the result is read from the case's nodes, not from memory
    assert _selected(first).results["quality"]["verdict"] == result.verdict


def _array(scene_case) -> np.ndarray:
    return sitk.GetArrayFromImage(bridge.labels_from_segmentation_node(scene_case.segmentation, scene_case.reference))


def test_dlr_job_gives_a_typed_result_and_cancel_stops_the_whole_job(two_cases) -> None:
    scene, first, _ = two_cases
    view = RecordingView()
    controller = JobController(scene, view)
    result = (controller.start(lambda: start_dlr(_selected(first)), "DLR"), _poll_until_done(controller))[1]
    assert isinstance(result, DlrResult) and 0.0 <= result.probability <= 1.0
    assert _selected(first).results["dlr"]["idh_mutant_probability"] == result.probability

    before = _array(first)
    job = controller.start(lambda: start_segmentation(_selected(first)), "Segmenting")
    deadline = time.monotonic() + 60
    while job.progress is None and job.running and time.monotonic() < deadline:
        time.sleep(0.01)
    controller.cancel()
    assert _poll_until_done(controller, 30) is None
    assert view.events[-1] == ("error", ("Cancelled.", "")) and job.cancelled
    np.testing.assert_array_equal(_array(first), before)
    assert not job.workdir.exists()


def test_a_failing_job_shows_the_childs_message_and_output(two_cases, tmp_path: Path) -> None:
    scene, first, _ = two_cases
    broken = tmp_path / "broken-bundle"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    view = RecordingView()
    controller = JobController(scene, view)
    job = controller.start(lambda: start_segmentation(_selected(first), model=broken), "Segmenting")
    assert _poll_until_done(controller, 120) is None
    kind, (message, details) = view.events[-1]
    assert kind == "error" and f"segmentation job for {first.case_id} failed" in message and "model.json" in message
    assert "model.json" in details and not job.workdir.exists()
    with pytest.raises(InputError, match="no tumour segmentation"):
        start_dlr(workflow.SceneCase("X", dict(first.volumes)))


def test_results_survive_a_scene_save_and_reload_and_still_export(small_cohort: Path, tmp_path: Path) -> None:
    scene = slicer.vtkMRMLScene()
    scene_case = workflow.load_case(scene, case_folders(small_cohort)[0])
    workflow.compute_perfusion(scene, scene_case)
    for node in [*scene_case.volumes.values(), scene_case.segmentation]:
        storage = node.CreateDefaultStorageNode()
        scene.AddNode(storage)
        storage.SetFileName(str(tmp_path / f"{node.GetName()}{'.seg' if node is scene_case.segmentation else ''}.nrrd"))
        node.SetAndObserveStorageNodeID(storage.GetID())
        assert storage.WriteData(node)
    scene.SetRootDirectory(str(tmp_path))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()

    reloaded = slicer.vtkMRMLScene()
    reloaded.SetURL(str(tmp_path / "scene.mrml"))
    reloaded.Connect()  # the chart's colour table does not read back here; the case's own nodes must
    volumes = {role: reloaded.GetFirstNodeByName(node.GetName()) for role, node in scene_case.volumes.items()}
    assert all(node.GetImageData() is not None for node in volumes.values())
    back = workflow.scene_case_from_nodes(volumes, reloaded.GetFirstNodeByName(scene_case.segmentation.GetName()))
    assert back.case_id == scene_case.case_id and back.results == json.loads(json.dumps(scene_case.results))
    report = workflow.export_report(back, tmp_path / "report")
    saved = json.loads((report / "result.json").read_text())
    assert saved["perfusion"]["rcbv"] == scene_case.results["perfusion"]["rcbv"]
    assert {"attention.png", "segmentation.png"} <= set(os.listdir(report))


def test_catalogue_names_the_defaults_and_is_checked_against_its_schema(tmp_path: Path) -> None:
    assert catalog.default_model("segmentation", {"flair", "t1ce", "t2"}).name == "segmentation-segresnet-flair-t1ce"
    assert catalog.default_model("segmentation", {"flair"}).name == "segmentation-flair"
    assert catalog.resolve_model("dlr", "").name == "dlr-flair-t1ce"
    assert catalog.resolve_model("segmentation", "segmentation-flair-t1ce") == catalog.MODELS_DIR / "segmentation-flair-t1ce"
    assert catalog.resolve_model("perfusion", str(tmp_path)) == tmp_path
    for entry in catalog.load_catalog():
        record = json.loads((entry.folder / "model.json").read_text())
        assert record["kind"] == entry.kind, entry.id
        if entry.kind == "segmentation":
            assert tuple(record["modalities"]) == entry.modalities
    menu = [e.id for e in catalog.entries("segmentation")]  # defaults first, then the others in catalogue order
    assert menu == ["segmentation-segresnet-flair-t1ce", "segmentation-flair", "segmentation-flair-t1ce",
                    "segmentation-flair-t1ce-appearance"]
    with pytest.raises(InputError, match="no shipped segmentation model"):
        catalog.default_model("segmentation", {"t1", "t2"})
    bad = tmp_path / "catalog.json"
    bad.write_text(json.dumps({"catalog_format": 1, "models": [{"id": "x", "kind": "nonsense", "title": "x",
                                                                 "modalities": ["flair"], "default": True}]}))
    with pytest.raises(InputError, match="breaks catalog.schema.json"):
        catalog.load_catalog(bad)
