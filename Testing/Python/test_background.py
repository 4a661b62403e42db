"""Background jobs (what Slicer's widget runs): progress lines, results, cancel, errors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from IDHPredictorLib.background import BackgroundJob, JobCancelled, parse_progress_line, progress_line
from IDHPredictorLib.io.cohort import case_folders


def test_progress_lines_round_trip_and_ignore_other_output() -> None:
    parsed = parse_progress_line(progress_line(3, 12, "segmenting P1 (model)") + "\n")
    assert (parsed.done, parsed.total, parsed.description, parsed.fraction) == (3, 12, "segmenting P1 (model)", 0.25)
    assert parse_progress_line("wrote /tmp/x.nii.gz") is None
    assert parse_progress_line("IDHPREDICTOR-PROGRESS x 12 bad") is None


def _first_case(cohort: Path) -> Path:
    return case_folders(cohort)[0]


def test_segmentation_job_reports_progress_and_writes_the_labels(small_cohort: Path, tmp_path: Path) -> None:
    from IDHPredictorLib.io.case import read_case
    from IDHPredictorLib.segmentation.inference import segment_case
    from IDHPredictorLib.segmentation.model_bundle import default_bundle_for, find_case_roles, load_model

    case_dir = _first_case(small_cohort)
    out = tmp_path / "labels.nii.gz"
    job = BackgroundJob(["segment", str(case_dir), "--out", str(out)])
    seen = []
    while job.running:
        if job.progress is not None and job.progress not in seen:
            seen.append(job.progress)
        time.sleep(0.02)
    job.wait()
    seen.append(job.progress)
    assert seen[-1].done == seen[-1].total > 0 and len(seen) >= 2
    assert all(a.done <= b.done for a, b in zip(seen, seen[1:]))
    model = load_model(default_bundle_for(find_case_roles(case_dir)))
    expected = segment_case(model.network, model.modalities, read_case(case_dir, model.modalities, dsc=False),
                            min_enhancing_ml=model.min_enhancing_ml)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), sitk.GetArrayFromImage(expected))


def test_cancel_stops_the_job_and_leaves_no_output(small_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.nii.gz"
    job = BackgroundJob(["segment", str(_first_case(small_cohort)), "--out", str(out)])
    deadline = time.monotonic() + 60
    while job.progress is None and job.running and time.monotonic() < deadline:
        time.sleep(0.01)
    job.cancel()
    with pytest.raises(JobCancelled):
        job.wait(10)
    assert not job.running and job.cancelled
    assert not out.exists() and not list(tmp_path.iterdir())


def test_bad_input_reaches_the_caller_as_the_clis_message(tmp_path: Path) -> None:
    job = BackgroundJob(["segment", str(tmp_path / "missing"), "--out", str(tmp_path / "labels.nii.gz")])
    with pytest.raises(RuntimeError, match="is not a case folder"):
        job.wait(60)
