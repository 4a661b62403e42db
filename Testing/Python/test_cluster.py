"""Dask distributed: a real scheduler and worker processes on 127.0.0.1 run the per-case work and
the folds; the reports equal a local run's, a lost worker costs only time, a broken case is named
while the others finish, and a cohort run resumes where it stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dask_cluster import LocalDaskCluster
from test_dlr_cohort import _bundle

from IDHPredictorLib import compute
from IDHPredictorLib.batch import DONE, SUMMARY, run_batch
from IDHPredictorLib.cli import main
from IDHPredictorLib.errors import InputError
from IDHPredictorLib.phantom.cohort import PhantomOptions, generate_cohort
from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> LocalDaskCluster:
    """A scheduler and two one-thread workers (3 GB each), stopped when the module's tests end."""
    with LocalDaskCluster(tmp_path_factory.mktemp("dask"), workers=2) as running:
        yield running


def _report_results(folder: Path) -> list[dict]:
    return [{key: result[key] for key in ("name", "section", "metrics", "n_patients")}
            for result in json.loads((folder / "report.json").read_text())["results"]]


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {path.parent.name: sitk.GetArrayFromImage(sitk.ReadImage(str(path))) for path in sorted(folder.glob("*/*_seg.nii.gz"))}


def test_refuses_a_scheduler_it_cannot_use(cluster: LocalDaskCluster, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no Dask scheduler answers"), compute.use_scheduler("tcp://127.0.0.1:9"):
        pass
    with pytest.raises(InputError, match="cannot be seen by worker"), compute.use_scheduler(cluster.address, [tmp_path / "elsewhere"]):
        pass
    assert not compute.on_cluster()


def test_phantom_on_the_cluster_is_byte_identical(cluster: LocalDaskCluster, tmp_path: Path) -> None:
    options = PhantomOptions(cases=2, seed=5, size="small")
    local = generate_cohort(tmp_path / "local", options, workers=1)
    with compute.use_scheduler(cluster.address, [tmp_path]):
        remote = generate_cohort(tmp_path / "remote", options)
    files = sorted(p.relative_to(local) for p in local.rglob("*.nii.gz"))
    assert len(files) >= 10 and files == sorted(p.relative_to(remote) for p in remote.rglob("*.nii.gz"))
    assert all((local / f).read_bytes() == (remote / f).read_bytes() for f in files)
    assert (local / "clinical.csv").read_text() == (remote / "clinical.csv").read_text()


def test_dlr_on_the_cluster_gives_the_local_report(small_cohort: Path, cluster: LocalDaskCluster, tmp_path: Path) -> None:
    model = _bundle(tmp_path / "tiny-seg")
    common = [str(small_cohort), "--model", str(model), "--no-single-modality", "--k", "8", "--components", "4"]
    assert main(["dlr", *common, "--out", str(tmp_path / "local"), "--cache", str(tmp_path / "cache-local")]) == 0
    assert main(["dlr", *common, "--out", str(tmp_path / "remote"), "--cache", str(tmp_path / "cache-remote"),
                 "--scheduler", cluster.address]) == 0
    local, remote = _report_results(tmp_path / "local"), _report_results(tmp_path / "remote")
    assert [r["name"] for r in local] == [r["name"] for r in remote] and len(local) == 2  # DLR and the radiomics baseline
    assert local == remote
    # this process wrote the workers' descriptors to the cache, one file per case
    assert len(list((tmp_path / "cache-remote").rglob("*.npz"))) == 2 * 6


def test_perfusion_on_the_cluster_gives_the_local_report(perfusion_cohort: Path, cluster: LocalDaskCluster,
                                                         tmp_path: Path) -> None:
    common = [str(perfusion_cohort), "--folds", "3", "--test-fraction", "0.25", "--epochs", "3", "--device", "cpu"]
    assert main(["perfusion", *common, "--out", str(tmp_path / "local")]) == 0
    assert main(["perfusion", *common, "--out", str(tmp_path / "remote"), "--scheduler", cluster.address]) == 0
    local, remote = _report_results(tmp_path / "local"), _report_results(tmp_path / "remote")
    assert [r["name"] for r in local] == [r["name"] for r in remote]
    for a, b in zip(local, remote):
        assert a["metrics"]["auc"]["value"] == pytest.approx(b["metrics"]["auc"]["value"], abs=1e-9), a["name"]
    patterns = [json.loads((tmp_path / side / "patterns.json").read_text())["rcbv"] for side in ("local", "remote")]
    assert patterns[0] == patterns[1]  # the per-case DSC analysis, computed on the workers


def test_cohort_segmentation_survives_a_lost_worker_and_resumes(small_cohort: Path, cluster: LocalDaskCluster,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the paper's 2-D network, not the 3-D default: this is about the cluster, and it is 5 times faster here
    bundle = str(DEFAULT_MODELS / "segmentation-flair-t1ce")
    assert main(["segment", str(small_cohort), "--out", str(tmp_path / "local"), "--model", bundle]) == 0
    cluster.start_worker("doomed")
    killed = []

    def kill_after_first_case(done: int, _total: int) -> None:
        if done == 1 and not killed:
            cluster.kill_worker("doomed")  # with its tasks in flight: Dask reschedules them
            killed.append(True)

    with compute.use_scheduler(cluster.address, [small_cohort, tmp_path]):
        summary = run_batch("segment", small_cohort, tmp_path / "remote", {"model": bundle, "preprocess": "auto",
                                                                          "postprocess": True, "device": "auto"},
                            progress=kill_after_first_case)
    assert killed and not summary.failures and len(summary.computed) == 6
    local, remote = _labels(tmp_path / "local"), _labels(tmp_path / "remote")
    assert sorted(local) == sorted(remote) and len(local) == 6
    assert all(np.array_equal(local[case], remote[case]) for case in local)
    # the same command again, through the environment variable: every case is skipped
    monkeypatch.setenv(compute.SCHEDULER_VARIABLE, cluster.address)
    assert main(["segment", str(small_cohort), "--out", str(tmp_path / "remote"), "--model", bundle]) == 0
    again = json.loads((tmp_path / "remote" / SUMMARY).read_text())
    assert again["computed"] == [] and len(again["skipped"]) == 6


def test_a_broken_case_is_named_while_the_others_finish(small_cohort: Path, cluster: LocalDaskCluster, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    flair = next((cohort / "PHANTOM-002").glob("*_flair.nii.gz"))
    good = flair.read_bytes()
    flair.write_bytes(good[: len(good) // 3])  # a truncated download
    out = tmp_path / "predictions"
    assert main(["predict", str(cohort), "--out", str(out), "--scheduler", cluster.address]) == 2
    err = capsys.readouterr().err
    assert "failed PHANTOM-002" in err and "1 cases failed" in err
    summary = json.loads((out / SUMMARY).read_text())
    assert [f["case_id"] for f in summary["failures"]] == ["PHANTOM-002"] and len(summary["computed"]) == 5
    assert not (out / "PHANTOM-002").exists()  # nothing half-written
    assert all((out / case / DONE).exists() and (out / case / "prediction.json").exists() for case in summary["computed"])
    flair.write_bytes(good)  # repaired: the next run does that case only
    assert main(["predict", str(cohort), "--out", str(out), "--scheduler", cluster.address]) == 0
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["computed"] == ["PHANTOM-002"] and len(summary["skipped"]) == 5
