"""DICOM in and out on a simulated patient written as a scanner's study: series recognised from
their headers (a localiser and a diffusion series rejected), the listing error when a role is
ambiguous or missing and the override that settles it, one clear error for a corrupt file or a
series without geometry; `predict STUDY --dicom-out` writes a SEG equal to the label map voxel
for voxel at the same position and an SR holding the numbers of result.json, and dciodvfy
reports no error in either."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("highdicom", reason="needs the dicom extra (pip install -e '.[dicom]')")
import pydicom  # noqa: E402

from IDHPredictorLib.cli import main  # noqa: E402
from IDHPredictorLib.errors import InputError  # noqa: E402
from IDHPredictorLib.io.case import read_case  # noqa: E402
from IDHPredictorLib.io.cohort import case_folders  # noqa: E402
from IDHPredictorLib.io.dicom_export import read_report, read_segmentation  # noqa: E402
from IDHPredictorLib.io.dicom_study import assign_roles, is_dicom_study, scan_study  # noqa: E402
from IDHPredictorLib.phantom.dicom_study import write_case_as_study  # noqa: E402

DCIODVFY = shutil.which("dciodvfy")
EXPECTED = {"t1": 2, "t2": 3, "flair": 4, "dsc": 6, "t1ce": 7}  # role -> series number in the written study


@pytest.fixture(scope="module")
def study(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = case_folders(small_cohort)[0]
    return write_case_as_study(read_case(folder, resample=False), tmp_path_factory.mktemp("study") / folder.name, seed=11)


def _copy(study: Path, tmp_path: Path) -> Path:
    target = tmp_path / study.name
    shutil.copytree(study, target)
    return target


def test_every_series_is_recognised_from_its_headers(study: Path) -> None:
    assert is_dicom_study(study)
    series = scan_study(study)
    assert len(series) == 7
    assigned = assign_roles(series)
    assert {role: info.number for role, info in assigned.items()} == EXPECTED


def test_a_3d_inversion_prepared_t1_is_recognised() -> None:
    """MPRAGE, the usual post-contrast T1 of glioma protocols: TR about 2 s, TE 3 ms, TI 900 ms."""
    from dataclasses import replace

    from IDHPredictorLib.io.dicom_study import SeriesInfo, recognise

    mprage = SeriesInfo("1.2", 9, "t1_mprage_sag_p2_iso", (), "ORIGINAL\\PRIMARY\\M", "GR\\IR", 2300.0, 2.98, 900.0,
                        True, 0, "P")
    assert recognise(mprage)[0] == "t1ce"
    assert recognise(replace(mprage, contrast=False, description="t1_mprage_sag"))[0] == "t1"


def test_an_ambiguous_study_lists_its_series_and_the_override_settles_it(study: Path, tmp_path: Path) -> None:
    copy = _copy(study, tmp_path)
    second = copy / "08-AX_FLAIR_repeat"
    second.mkdir()
    uid = pydicom.uid.generate_uid()
    for path in sorted((copy / "04-AX_T2_FLAIR").iterdir()):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SOPInstanceUID = uid, 8, pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(second / path.name)
    with pytest.raises(InputError, match="more than one series could be the flair: series 4, 8") as error:
        assign_roles(scan_study(copy), folder=copy)
    assert "'AX T2 FLAIR'" in str(error.value) and "localiser" in str(error.value) and "--series" in str(error.value)
    assert assign_roles(scan_study(copy), {"flair": "8"})["flair"].uid == uid
    shutil.rmtree(copy / "04-AX_T2_FLAIR")
    shutil.rmtree(second)
    with pytest.raises(InputError, match="no FLAIR series recognised"):
        assign_roles(scan_study(copy), folder=copy)


def test_a_corrupt_file_and_a_series_without_geometry_are_named(study: Path, tmp_path: Path) -> None:
    copy = _copy(study, tmp_path)
    victim = sorted((copy / "02-AX_T1_SE").iterdir())[3]
    original = victim.read_bytes()
    ds = pydicom.dcmread(victim)
    del ds.ImagePositionPatient
    ds.save_as(victim)
    with pytest.raises(InputError, match="has no image geometry") as error:
        scan_study(copy)
    assert victim.name in str(error.value)
    victim.write_bytes(original)
    for length in (140, 600):  # cut in the file meta header, and in the image's own attributes
        truncated = sorted((copy / "03-AX_T2_TSE").iterdir())[0]
        truncated.write_bytes(truncated.read_bytes()[:length])
        with pytest.raises(InputError, match="corrupt DICOM file") as error:
            scan_study(copy)
        assert truncated.name in str(error.value)


def test_predict_writes_a_seg_and_an_sr_that_read_back_and_validate(study: Path, tmp_path: Path) -> None:
    out, labels = tmp_path / "dicom-out", tmp_path / "labels.nii.gz"
    assert main(["predict", str(study), "--dicom-out", str(out), "--labels", str(labels), "--out", str(tmp_path / "result.json")]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    reference = sitk.ReadImage(str(labels))
    seg = read_segmentation(out / "tumour-seg.dcm")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg), sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(seg.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(seg.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(seg.GetDirection(), reference.GetDirection(), atol=1e-6)
    source = pydicom.dcmread(sorted((study / "07-AX_T1_SE_POST").iterdir())[0])
    written = pydicom.dcmread(out / "tumour-seg.dcm")
    assert (written.PatientID, written.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)
    assert written.SeriesInstanceUID != source.SeriesInstanceUID

    report = read_report(out / "idh-report-sr.dcm")
    assert report["idh_mutant_probability"] == pytest.approx(result["dlr"]["idh_mutant_probability"], abs=1e-4)
    voxel_ml = float(np.prod(reference.GetSpacing())) / 1000
    counts = np.bincount(sitk.GetArrayFromImage(reference).ravel(), minlength=5)
    assert report["volume_ml"] == pytest.approx({value: counts[value] * voxel_ml for value in (1, 2, 4)}, abs=1e-3)
    assert report["statement"] == "Research use only, not for diagnosis"
    if DCIODVFY is None:
        if os.environ.get("CI"):
            raise RuntimeError("dciodvfy not found: .ci/run installs Debian's dicom3tools")
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    for name in ("tumour-seg.dcm", "idh-report-sr.dcm"):
        checked = subprocess.run([DCIODVFY, str(out / name)], capture_output=True, text=True)
        errors = [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (name, errors)


def test_validate_shows_the_assignment_and_the_slicer_workflow_loads_a_study(study: Path, small_cohort: Path, capsys) -> None:
    assert main(["validate", str(study), "--series", "flair=4"]) == 0
    listing = capsys.readouterr().err
    assert "'AX T2 FLAIR'" in listing and "-> flair" in listing and "(diffusion)" in listing and "(localiser)" in listing
    assert main(["validate", str(case_folders(small_cohort)[0]), "--series", "flair=4"]) == 2
    assert "is not a DICOM study folder" in capsys.readouterr().err
    slicer = pytest.importorskip("slicer")
    from IDHPredictorLib import scene_workflow

    scene_case = scene_workflow.load_case(slicer.vtkMRMLScene(), study)
    assert sorted(scene_case.volumes) == ["flair", "t1", "t1ce", "t2"] and scene_case.dsc is not None


def test_a_case_loaded_from_a_study_exports_dicom_with_its_report(study: Path, small_cohort: Path, tmp_path: Path) -> None:
    """What the Slicer module's and the web app's Export do for a study: the SEG and SR beside result.json."""
    slicer = pytest.importorskip("slicer")
    from IDHPredictorLib import scene_workflow
    from IDHPredictorLib import slicer_bridge as bridge
    from IDHPredictorLib.io.images import labels_on_grid

    scene = slicer.vtkMRMLScene()
    scene_case = scene_workflow.load_case(scene, study)
    assert scene_case.dicom_source and all("AX_T1_SE_POST" in p for p in scene_case.dicom_source)
    reference = bridge.image_from_volume_node(scene_case.reference)
    truth = sitk.ReadImage(str(case_folders(small_cohort)[0] / f"{study.name}_seg.nii.gz"))
    scene_workflow.set_labels(scene, scene_case, labels_on_grid(sitk.Cast(truth, sitk.sitkUInt8), reference))
    unfinished = json.loads((scene_workflow.export_report(scene_case, tmp_path / "early") / "result.json").read_text())
    assert unfinished["dicom"].startswith("not written") and not (tmp_path / "early" / "dicom").exists()
    scene_workflow.compute_dlr(scene_case)
    report = scene_workflow.export_report(scene_case, tmp_path / "report")
    seg = read_segmentation(report / "dicom" / "tumour-seg.dcm")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg), sitk.GetArrayFromImage(sitk.ReadImage(str(report / f"{study.name}_seg.nii.gz"))))
    assert read_report(report / "dicom" / "idh-report-sr.dcm")["idh_mutant_probability"] == pytest.approx(
        scene_case.results["dlr"]["idh_mutant_probability"], abs=1e-4)
