"""Case, DSC and cohort I/O: round trips in every accepted format, and clear errors on bad input."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_writer import arrays_equal, write_dicom_4d, write_dicom_series

from IDHPredictorLib.errors import InputError
from IDHPredictorLib.io.case import read_case
from IDHPredictorLib.io.cohort import case_folders, read_cohort
from IDHPredictorLib.io.dsc import read_dsc_series
from IDHPredictorLib.io.images import same_grid

MODALITIES = ("t1", "t1ce", "t2", "flair")
BRATS_2023 = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"}


def _source(cohort: Path) -> Path:
    return case_folders(cohort)[0]


def _load(folder: Path, name: str) -> sitk.Image:
    return sitk.ReadImage(str(folder / f"{folder.name}_{name}.nii.gz"))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_case_round_trip_in_file_formats(small_cohort: Path, tmp_path: Path, suffix: str) -> None:
    source = _source(small_cohort)
    case_dir = tmp_path / "P1"
    case_dir.mkdir()
    for name in (*MODALITIES, "seg"):
        sitk.WriteImage(_load(source, name), str(case_dir / f"P1_{name}{suffix}"))
    case = read_case(case_dir, dsc=False)
    assert case.case_id == "P1"
    for name in MODALITIES:
        assert arrays_equal(case.images[name], _load(source, name))
        assert same_grid(case.images[name], _load(source, name), tolerance=1e-5)
    assert arrays_equal(case.labels, _load(source, "seg"))


def test_case_round_trip_in_dicom_and_brats_2023_names(small_cohort: Path, tmp_path: Path) -> None:
    source = _source(small_cohort)
    case_dir = tmp_path / "BraTS-GLI-00001-000"
    for i, name in enumerate(MODALITIES):
        write_dicom_series(_load(source, name), case_dir / f"BraTS-GLI-00001-000-{BRATS_2023[name]}",
                           series_uid=f"1.2.826.0.1.3680043.2.1125.9.{i}")
    sitk.WriteImage(_load(source, "seg"), str(case_dir / "BraTS-GLI-00001-000-seg.nii.gz"))
    case = read_case(case_dir, dsc=False)
    assert case.case_id == "BraTS-GLI-00001-000"
    for name in MODALITIES:
        assert arrays_equal(case.images[name], _load(source, name))
        assert same_grid(case.images[name], _load(source, name), tolerance=1e-4)


def test_brats_2023_enhancing_label_3_becomes_4(small_cohort: Path, tmp_path: Path) -> None:
    source = _source(small_cohort)
    case_dir = tmp_path / "C"
    shutil.copytree(source, case_dir)
    for old in case_dir.iterdir():
        old.rename(case_dir / old.name.replace(source.name, "C"))
    labels = _load(source, "seg")
    sitk.WriteImage(sitk.ChangeLabel(labels, {4: 3}), str(case_dir / "C_seg.nii.gz"))
    assert arrays_equal(read_case(case_dir, dsc=False).labels, labels)


def test_off_grid_modality_is_resampled_with_a_warning(small_cohort: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    source = _source(small_cohort)
    case_dir = tmp_path / "P2"
    case_dir.mkdir()
    for name in (*MODALITIES, "seg"):
        sitk.WriteImage(_load(source, name), str(case_dir / f"P2_{name}.nii.gz"))
    shifted = _load(source, "t2")
    shifted.SetOrigin([o + 1.0 for o in shifted.GetOrigin()])
    sitk.WriteImage(shifted, str(case_dir / "P2_t2.nii.gz"))
    with caplog.at_level(logging.WARNING):
        case = read_case(case_dir, dsc=False)
    assert "not on the reference grid" in caplog.text and "P2_t2" in caplog.text
    assert same_grid(case.images["t2"], case.images["t1ce"])


def _dsc(cohort: Path) -> tuple[sitk.Image, dict]:
    source = _source(cohort)
    sidecar = json.loads((source / f"{source.name}_dsc.json").read_text(encoding="utf-8"))
    return sitk.ReadImage(str(source / f"{source.name}_dsc.nii.gz")), sidecar


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_dsc_round_trip_with_sidecar_timing(small_cohort: Path, tmp_path: Path, suffix: str) -> None:
    series, _ = _dsc(small_cohort)
    path = tmp_path / f"P_dsc{suffix}"
    sitk.WriteImage(series, str(path))
    (tmp_path / "P_dsc.json").write_text(json.dumps({"RepetitionTime": 1.25, "EchoTime": 0.03}), encoding="utf-8")
    dsc = read_dsc_series(path)
    assert arrays_equal(dsc.image, series)
    assert dsc.repetition_time_s == 1.25 and dsc.echo_time_s == 0.03
    assert np.allclose(dsc.frame_geometry().GetDirection(), series.GetDirection()[:3] + series.GetDirection()[4:7]
                       + series.GetDirection()[8:11])


def test_dsc_round_trip_from_dicom_temporal_positions(small_cohort: Path, tmp_path: Path) -> None:
    series, _ = _dsc(small_cohort)
    series = series[:, :, :, :24]  # fewer frames keep the test fast
    write_dicom_4d(series, tmp_path / "P_dsc", tr_ms=1500.0, te_ms=30.0)
    dsc = read_dsc_series(tmp_path / "P_dsc")
    assert dsc.image.GetSize() == series.GetSize()
    assert arrays_equal(dsc.image, series)
    assert dsc.repetition_time_s == pytest.approx(1.5) and dsc.echo_time_s == pytest.approx(0.03)


def test_dual_echo_dsc_from_two_files_and_from_one_dicom_folder(dual_echo_cohort: Path, tmp_path: Path) -> None:
    folder = case_folders(dual_echo_cohort)[0]
    case = read_case(folder, ("t1ce",), labels=False, dsc=True)
    assert case.dsc.dual_echo and case.dsc.short_echo_time_s < 0.005 < case.dsc.echo_time_s
    assert case.dsc.short_echo.GetSize() == case.dsc.image.GetSize()
    # one DICOM folder, two EchoTime values: the same two echoes
    frames = [sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])[:, :, 8:12] for image in
              (case.dsc.short_echo, case.dsc.image)]  # a slab of 20 frames keeps the test fast
    dicom = tmp_path / "P_dsc"
    for echo, (image, te) in enumerate(((case.dsc.short_echo, case.dsc.short_echo_time_s), (case.dsc.image, case.dsc.echo_time_s))):
        slab = sitk.JoinSeries([sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, t])[:, :, 8:12] for t in range(20)],
                               0.0, case.dsc.repetition_time_s)
        write_dicom_4d(slab, dicom, tr_ms=1000 * case.dsc.repetition_time_s, te_ms=1000 * te, echo=echo)
    dsc = read_dsc_series(dicom)
    assert dsc.dual_echo and dsc.echo_time_s == pytest.approx(case.dsc.echo_time_s, abs=1e-4)
    assert dsc.short_echo_time_s == pytest.approx(case.dsc.short_echo_time_s, abs=1e-4)
    assert arrays_equal(sitk.Extract(dsc.short_echo, [*dsc.short_echo.GetSize()[:3], 0], [0, 0, 0, 0]), frames[0])
    assert arrays_equal(sitk.Extract(dsc.image, [*dsc.image.GetSize()[:3], 0], [0, 0, 0, 0]), frames[1])
    # echoes that do not belong together are refused, naming the file
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    (other / f"{folder.name}_dsc-short.json").write_text(json.dumps({"RepetitionTime": case.dsc.repetition_time_s,
                                                                      "EchoTime": 0.05}))
    with pytest.raises(InputError, match="short echo"):
        read_case(other, ("t1ce",), labels=False, dsc=True)


def test_cohort_joins_clinical_rows(small_cohort: Path) -> None:
    cases = read_cohort(small_cohort)
    assert [c.case_id for c in cases] == [p.name for p in case_folders(small_cohort)]
    assert all(c.folder.name == c.case_id for c in cases)
    assert {c.idh_mutant for c in cases} == {True, False}
    assert "rcbv_true" in cases[0].clinical


# ---- bad input: one clear error naming the file and the fix ---------------------------------

def _copy_case(cohort: Path, tmp_path: Path) -> Path:
    source = _source(cohort)
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def test_missing_modality(small_cohort: Path, tmp_path: Path) -> None:
    case_dir = _copy_case(small_cohort, tmp_path)
    (case_dir / f"{case_dir.name}_flair.nii.gz").unlink()
    with pytest.raises(InputError, match=r"missing modality flair.*Add .*_flair\.nii\.gz"):
        read_case(case_dir)


def test_wrong_dimension(small_cohort: Path, tmp_path: Path) -> None:
    case_dir = _copy_case(small_cohort, tmp_path)
    path = case_dir / f"{case_dir.name}_t2.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(path))[:, :, 10], str(path))
    with pytest.raises(InputError, match=r"_t2\.nii\.gz: has 2 dimensions, expected 3"):
        read_case(case_dir)


@pytest.mark.parametrize("values, message", [(None, "label map is empty"), (5, r"label map has values \[5\] outside BraTS labels")])
def test_bad_label_map(small_cohort: Path, tmp_path: Path, values: int | None, message: str) -> None:
    case_dir = _copy_case(small_cohort, tmp_path)
    path = case_dir / f"{case_dir.name}_seg.nii.gz"
    labels = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(labels)
    array[:] = 0
    if values is not None:
        array[5, 5, 5] = values
    broken = sitk.GetImageFromArray(array)
    broken.CopyInformation(labels)
    sitk.WriteImage(broken, str(path))
    with pytest.raises(InputError, match=f"_seg.nii.gz: {message}"):
        read_case(case_dir)


def test_nans(small_cohort: Path, tmp_path: Path) -> None:
    case_dir = _copy_case(small_cohort, tmp_path)
    path = case_dir / f"{case_dir.name}_t1.nii.gz"
    image = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
    image[3, 3, 3] = float("nan")
    sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match=r"_t1\.nii\.gz: contains 1 NaN"):
        read_case(case_dir)


def test_short_dsc_series(small_cohort: Path, tmp_path: Path) -> None:
    series, _ = _dsc(small_cohort)
    sitk.WriteImage(series[:, :, :, :8], str(tmp_path / "P_dsc.nii.gz"))
    with pytest.raises(InputError, match="only 8 time frames"):
        read_dsc_series(tmp_path / "P_dsc.nii.gz")


def _copy_cohort(cohort: Path, tmp_path: Path) -> Path:
    target = tmp_path / "cohort"
    shutil.copytree(cohort, target)
    return target


def _edit_clinical(cohort: Path, old: str, new: str) -> None:
    path = cohort / "clinical.csv"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_unknown_idh_value(small_cohort: Path, tmp_path: Path) -> None:
    cohort = _copy_cohort(small_cohort, tmp_path)
    _edit_clinical(cohort, ",wildtype,", ",unknown,")
    with pytest.raises(InputError, match=r"clinical\.csv: line \d+: unknown IDH value 'unknown'. Use 'mutant' or 'wildtype'"):
        read_cohort(cohort)


def test_duplicate_case_ids(small_cohort: Path, tmp_path: Path) -> None:
    cohort = _copy_cohort(small_cohort, tmp_path)
    _edit_clinical(cohort, "PHANTOM-001,", "PHANTOM-000,")
    with pytest.raises(InputError, match=r"clinical\.csv: line 3: duplicate case_id 'PHANTOM-000'"):
        read_cohort(cohort)


def test_missing_column(small_cohort: Path, tmp_path: Path) -> None:
    cohort = _copy_cohort(small_cohort, tmp_path)
    _edit_clinical(cohort, "diagnosis_date", "date")
    with pytest.raises(InputError, match="missing column.*diagnosis_date"):
        read_cohort(cohort)


def test_cli_prints_the_error_without_traceback(small_cohort: Path, tmp_path: Path) -> None:
    case_dir = _copy_case(small_cohort, tmp_path)
    (case_dir / f"{case_dir.name}_t1ce.nii.gz").unlink()
    result = subprocess.run([sys.executable, "-m", "IDHPredictorLib.cli", "validate", str(case_dir)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("idh-predictor: error:") and "missing modality t1ce" in result.stderr
