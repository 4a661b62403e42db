"""Cohort batches on this machine (two local worker processes): preprocess makes a cohort, folders
that are not cases are named, per-case options are refused for a cohort."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from IDHPredictorLib.batch import SUMMARY
from IDHPredictorLib.cli import main
from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS


def test_preprocess_over_a_cohort_makes_a_cohort(small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    (cohort / "notes").mkdir()  # a folder without images: left out, and said so
    out = tmp_path / "prepared"
    assert main(["preprocess", str(cohort), "--out", str(out), "--workers", "2"]) == 0
    assert "left out (no images, not case folders): notes" in capsys.readouterr().err
    summary = json.loads((out / SUMMARY).read_text())
    assert len(summary["computed"]) == 6 and summary["not_cases"] == ["notes"] and not summary["failures"]
    assert (out / "clinical.csv").read_text() == (cohort / "clinical.csv").read_text()
    assert main(["validate", str(out)]) == 0  # the output is a cohort the other commands take
    assert "6 cases" in capsys.readouterr().out
    for case in summary["computed"]:
        assert sorted(p.name for p in (out / case).iterdir() if p.name.endswith("_preprocessing.json")) == [
            f"{case}_preprocessing.json"]


def test_per_case_options_are_refused_for_a_cohort(small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(small_cohort), "--out", str(tmp_path / "p"), "--labels", str(tmp_path / "x.nii.gz")]) == 2
    assert "is a cohort: give --out DIR for the per-case folders and drop --labels" in capsys.readouterr().err
    assert main(["predict", str(small_cohort)]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_batch_outputs_never_replace_files_they_did_not_write(small_cohort: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    for out in (cohort, cohort / "PHANTOM-000" / "masks"):
        assert main(["segment", str(cohort), "--out", str(out)]) == 2
        assert "is the cohort or one of its case folders" in capsys.readouterr().err
    shutil.copytree(cohort / "PHANTOM-000", cohort / "PHANTOM-000-copy")  # the same case id twice
    out = tmp_path / "masks"
    (out / "PHANTOM-001").mkdir(parents=True)
    (out / "PHANTOM-001" / "mine.txt").write_text("keep")  # the user's own file where a case would go
    fast = str(DEFAULT_MODELS / "segmentation-flair-t1ce")  # the 2-D network: this is about files, and it is faster
    assert main(["segment", str(cohort), "--out", str(out), "--model", fast]) == 2
    summary = json.loads((out / SUMMARY).read_text())
    errors = {f["case_id"]: f["error"] for f in summary["failures"]}
    assert "holds files this command did not write" in errors["PHANTOM-001"]
    assert "holds case PHANTOM-000, as" in errors["PHANTOM-000-copy"]
    assert sorted(summary["computed"]) == ["PHANTOM-000", "PHANTOM-002", "PHANTOM-003", "PHANTOM-004", "PHANTOM-005"]
    assert (out / "PHANTOM-001" / "mine.txt").read_text() == "keep"
    report = json.loads((out / "PHANTOM-002" / "PHANTOM-002_seg.report.json").read_text())
    assert report["labels"] == str(out / "PHANTOM-002" / "PHANTOM-002_seg.nii.gz")  # the final path, not the temporary one
