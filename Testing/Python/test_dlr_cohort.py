"""DLR on phantom cases: descriptors, their cache, the dlr and predict commands end to end."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from IDHPredictorLib.cli import main
from IDHPredictorLib.dlr import cache as cache_module
from IDHPredictorLib.dlr.cache import cohort_descriptors
from IDHPredictorLib.dlr.descriptors import DescriptorOptions, deep_descriptors
from IDHPredictorLib.errors import InputError
from IDHPredictorLib.io.case import read_case
from IDHPredictorLib.io.cohort import case_folders
from IDHPredictorLib.phantom.cohort import PhantomOptions
from IDHPredictorLib.segmentation.model_bundle import load_model, save_model
from IDHPredictorLib.segmentation.network import LAYERS, Architecture, SegmentationCNN
from IDHPredictorLib.validation.metrics import METRIC_KEYS

OPTIONS = DescriptorOptions(scales=(0.5, 1.0, 2.0), slice_spacing_mm=5.0, max_descriptors=2000)


def _bundle(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return save_model(folder, SegmentationCNN(Architecture(in_channels=2, fc_width=16)), ("flair", "t1ce"),
                      {"trained_on": "test"})


def _cases(cohort: Path) -> list[Path]:
    return case_folders(cohort)


def test_descriptors_come_from_inside_the_tumour(small_cohort: Path, tmp_path: Path) -> None:
    model = load_model(_bundle(tmp_path / "seg"))
    case = read_case(_cases(small_cohort)[0], model.modalities, dsc=False)
    result = deep_descriptors(model.network, model.modalities, case, case.labels, ("conv3", "conv6", "fc8"), OPTIONS)
    assert result["conv6"].shape[1] == 128 and result["conv3"].shape[1] == 64 and result["fc8"].shape[1] == 4
    assert 0 < len(result["fc8"]) < len(result["conv6"]) <= OPTIONS.max_descriptors  # stride 4 samples fewer
    labels = sitk.GetArrayFromImage(case.labels)
    half = labels.copy()
    half[:, :, : labels.shape[2] // 2] = 0
    smaller = sitk.GetImageFromArray(half)
    smaller.CopyInformation(case.labels)
    unlimited = DescriptorOptions(scales=OPTIONS.scales, max_descriptors=10**9)
    full = deep_descriptors(model.network, model.modalities, case, case.labels, ("conv6",), unlimited)["conv6"]
    part = deep_descriptors(model.network, model.modalities, case, smaller, ("conv6",), unlimited)["conv6"]
    assert 0 < len(part) < len(full)
    empty = sitk.Image(case.labels)
    empty *= 0
    with pytest.raises(InputError, match="tumour mask is empty"):
        deep_descriptors(model.network, model.modalities, case, empty, ("conv6",), OPTIONS)


def test_descriptor_cache_is_reused_and_invalidated(small_cohort: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _bundle(tmp_path / "seg")
    cases = _cases(small_cohort)[:2]
    first = cohort_descriptors(load_model(folder), folder, cases, ("conv6",), OPTIONS, tmp_path / "cache")
    calls = []
    real = cache_module.deep_descriptors

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module, "deep_descriptors", counting)
    again = cohort_descriptors(load_model(folder), folder, cases, ("conv6",), OPTIONS, tmp_path / "cache")
    assert calls == [] and all(np.array_equal(a, b) for a, b in zip(first["conv6"], again["conv6"]))
    _bundle(folder, seed=1)  # the same bundle folder, new weights
    changed = cohort_descriptors(load_model(folder), folder, cases, ("conv6",), OPTIONS, tmp_path / "cache")
    assert len(calls) == 2 and not np.array_equal(changed["conv6"][0], first["conv6"][0])
    seg = next(cases[0].glob("*_seg.nii.gz"))
    os.utime(seg, ns=(seg.stat().st_atime_ns, seg.stat().st_mtime_ns + 10**9))  # an edited mask
    cohort_descriptors(load_model(folder), folder, cases, ("conv6",), OPTIONS, tmp_path / "cache")
    assert len(calls) == 3
    monkeypatch.setattr(cache_module, "code_version", lambda *modules: "edited")  # the extraction code changed
    cohort_descriptors(load_model(folder), folder, cases, ("conv6",), OPTIONS, tmp_path / "cache")
    assert len(calls) == 5


def test_dlr_and_predict_commands(small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    models = tmp_path / "models"
    segmentation = _bundle(models / "tiny-seg")
    out = tmp_path / "report"
    assert main(["dlr", str(small_cohort), "--out", str(out), "--model", str(segmentation), "--no-single-modality",
                 "--k", "8", "--components", "4", "--cache", str(tmp_path / "cache"),
                 "--save-model", str(models / "dlr")]) == 0
    record = json.loads((models / "dlr" / "model.json").read_text())
    provenance, cohort = record["provenance"], record["training_cohort"]
    assert cohort["folder"] == str(small_cohort) and cohort["patients"] == 6
    assert cohort["phantom"]["options"] == asdict(PhantomOptions(cases=6, seed=11, size="small"))  # conftest's cohort
    assert provenance["command"].startswith("idh-predictor dlr ") and str(small_cohort) in provenance["command"]
    assert provenance["library_version"] and provenance["created_utc"]
    report = json.loads((out / "report.json").read_text())
    names = [r["name"] for r in report["results"]]
    assert names[0].startswith("DLR flair+t1ce") and names[1].startswith("Radiomics flair+t1ce")
    for result in report["results"]:
        assert set(result["metrics"]) == set(METRIC_KEYS) and result["n_patients"] == 6
        assert set(result["metrics"]["auc"]) == {"value", "ci_low", "ci_high", "ci_note"}
    assert "| Methods | AUC | ACC | SENS | SPEC | PPV | NPV | MCC |" in (out / "table.md").read_text()
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    # the probability a user sees is rated too: cross-fitted Platt scaling, Brier, ECE, reliability diagram
    calibration = report["results"][0]["calibration"]
    assert calibration["probability"] == "Platt-scaled, cross-fitted" and 0 <= calibration["ece"] <= 1
    assert sum(row["count"] for row in calibration["reliability"]) == 6
    assert (out / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    case = _cases(small_cohort)[0]
    assert main(["predict", str(case), "--dlr-model", str(models / "dlr"), "--out", str(tmp_path / "p.json")]) == 0
    prediction = json.loads((tmp_path / "p.json").read_text())["dlr"]
    assert 0.0 <= prediction["idh_mutant_probability"] <= 1.0
    assert prediction["predicted_class"] == ("mutant" if prediction["idh_mutant_probability"] >= 0.5 else "wildtype")
    assert prediction["top_features"] and prediction["top_features"][0]["feature"].startswith("conv6 filter")
    assert prediction["mask"].endswith("_seg.nii.gz")
    _bundle(models / "tiny-seg", seed=3)  # the network under the DLR bundle changed
    assert main(["predict", str(case), "--dlr-model", str(models / "dlr")]) == 2
    assert "is not the network DLR bundle dlr was built on" in capsys.readouterr().err


def test_layer_comparison_and_temporal_split_errors(small_cohort: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    segmentation = _bundle(tmp_path / "tiny-seg")
    common = [str(small_cohort), "--model", str(segmentation), "--no-single-modality", "--no-radiomics", "--k", "8",
              "--components", "4", "--cache", str(tmp_path / "cache")]
    assert main(["dlr", *common, "--out", str(tmp_path / "layers"), "--compare-layers"]) == 0
    report = json.loads((tmp_path / "layers" / "report.json").read_text())
    assert [r["layer"] for r in report["results"]] == list(LAYERS)
    assert all(r["section"] == "Layer comparison" for r in report["results"])
    capsys.readouterr()
    assert main(["dlr", *common, "--out", str(tmp_path / "t"), "--validation", "temporal", "--split-date", "1990-01-01"]) == 2
    assert "every patient is on one side of 1990-01-01" in capsys.readouterr().err


def test_shipped_dlr_bundle_loads_and_names_its_network() -> None:
    from IDHPredictorLib.dlr.model import DlrModel
    from IDHPredictorLib.dlr.predict import DEFAULT_DLR_MODEL

    model = DlrModel.load(DEFAULT_DLR_MODEL)
    assert model.record["segmentation_model"] == "segmentation-flair-t1ce" and model.record["layer"] == "conv6"
    assert model.means.shape == (64, 128) and len(model.columns) == len(model.coef) == len(model.feature_names)
    vector_size = 2 * model.means.size
    assert model.columns.max() < vector_size
