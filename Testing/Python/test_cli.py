"""The idh-predictor command line: phantom with preview, validate, preprocess, option errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from IDHPredictorLib.cli import main
from IDHPredictorLib.io.cohort import case_folders


def test_phantom_command_writes_cohort_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cohort"
    assert main(["phantom", "--out", str(out), "--cases", "2", "--size", "small", "--seed", "4", "--preview"]) == 0
    assert (out / "clinical.csv").exists() and (out / "preview.png").stat().st_size > 10_000
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2
    assert main(["validate", str(out)]) == 0
    assert "cohort of 2 cases" in capsys.readouterr().out


def test_phantom_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["phantom", "--out", str(tmp_path / "x"), "--cases", "0"]) == 2  # bad input: exit 2, as documented
    assert "--cases must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_preprocess_command(small_cohort: Path, tmp_path: Path) -> None:
    case = case_folders(small_cohort)[0]
    assert main(["preprocess", str(case), "--out", str(tmp_path), "--modalities", "t1ce", "flair"]) == 0
    image = sitk.ReadImage(str(tmp_path / f"{case.name}_flair.nii.gz"))
    assert image.GetPixelID() == sitk.sitkFloat32
