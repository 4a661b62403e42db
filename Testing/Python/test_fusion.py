"""Calibration, nested stacking and conformal prediction sets (issue 18), on traits-only phantom
draws (thousands of simulated patients in a second) and one small end-to-end cohort."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from IDHPredictorLib.cli import main
from IDHPredictorLib.dlr.predict import describe_prediction
from IDHPredictorLib.fusion.bundle import describe_fusion
from IDHPredictorLib.fusion.stacking import Component, nested_fusion
from IDHPredictorLib.io.cohort import case_folders
from IDHPredictorLib.phantom.cohort import PhantomOptions, clinical_table
from IDHPredictorLib.validation.calibration import PlattCalibrator, calibration_summary, cross_fitted_probabilities, expected_calibration_error
from IDHPredictorLib.validation.conformal import ClassConditionalConformal, coverage_report, repeated_split_coverage
from IDHPredictorLib.validation.splits import repeated_kfold

PREOPERATIVE = ("age", "rcbv_true", "mismatch", "margin_irregularity", "heterogeneity")


def _traits(cases: int, seed: int, effect: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A few preoperative latent traits and the genotype of a traits-only phantom draw (choi mix)."""
    rows = [row for _, row in clinical_table(PhantomOptions(cases=cases, seed=seed, mix="choi", effect=effect))]
    return np.array([[float(row[c]) for c in PREOPERATIVE] for row in rows]), np.array([row["idh"] == "mutant" for row in rows], int)


def _out_of_fold_probabilities(X: np.ndarray, y: np.ndarray, class_weight: str | None = None) -> np.ndarray:
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight=class_weight))
    return cross_val_predict(model, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]


def test_platt_scaling_repairs_a_class_weighted_models_probabilities() -> None:
    # a class-weighted loss (as the LSTM's pos_weight) inflates the mutants' odds at a 27 % prevalence
    X, y = _traits(3000, seed=8)
    inflated = _out_of_fold_probabilities(X, y, class_weight="balanced")
    calibrated = cross_fitted_probabilities(inflated, y, on_logit=True)
    raw_ece, calibrated_ece = expected_calibration_error(y, inflated), expected_calibration_error(y, calibrated)
    assert raw_ece > 0.1, raw_ece  # the problem is real
    assert calibrated_ece < 0.04 and calibrated_ece < raw_ece / 3, (raw_ece, calibrated_ece)
    assert calibration_summary(y, calibrated, "Platt")["brier"] < calibration_summary(y, inflated, "raw")["brier"]
    # the calibrated label and number never disagree: one threshold, 0.5, on the calibrated probability
    platt = PlattCalibrator(on_logit=True).fit(inflated, y)
    restored = PlattCalibrator.from_dict(platt.as_dict())
    assert np.allclose(restored.predict_proba(inflated), platt.predict_proba(inflated))
    assert np.all(np.diff(platt.predict_proba(np.sort(inflated))) >= 0)  # monotone: AUC unchanged


class _SpyModel:
    """A component whose score for patient j is fit_id * 10_000 + j, remembering each fit's patients."""

    fits: list[set[int]] = []

    def fit(self, X: np.ndarray, y: np.ndarray) -> _SpyModel:
        self.fit_id = len(_SpyModel.fits)
        _SpyModel.fits.append(set(X[:, 0].astype(int)))
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.fit_id * 10_000 + X[:, 0]


class _SpyStacker:
    """Checks that every score it is fitted on, or applied to, came from a fit without that patient,
    and that the fits behind its training scores saw only its own (outer training) patients."""

    def fit(self, Z: np.ndarray, y: np.ndarray) -> _SpyStacker:
        fit_ids, patients = np.divmod(Z.astype(int), 10_000)
        self.outer_training = set(patients[:, 0])
        for fit_id, patient in zip(fit_ids.ravel(), patients.ravel()):
            assert patient not in _SpyModel.fits[fit_id], "the stacker saw an in-fold score"
            assert _SpyModel.fits[fit_id] <= self.outer_training, "a training score came from a fit that saw test patients"
        return self

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        fit_ids, patients = np.divmod(Z.astype(int), 10_000)
        for fit_id, patient in zip(fit_ids.ravel(), patients.ravel()):
            assert patient not in _SpyModel.fits[fit_id] and patient not in self.outer_training
        return np.column_stack([np.full(len(Z), 0.5), np.full(len(Z), 0.5)])


def test_the_stacker_only_ever_sees_out_of_fold_scores() -> None:
    _SpyModel.fits = []
    y = np.tile([0, 0, 1], 10)
    patients = np.arange(len(y))[:, None].astype(float)
    components = [Component(name, _SpyModel, patients) for name in ("DLR", "perfusion LSTM")]
    outer = repeated_kfold(y, 5, 1, 0)[0]
    fusion = nested_fusion(components, y, outer, {"both": ("DLR", "perfusion LSTM")}, inner_folds=3,
                           stacker_factory=_SpyStacker)
    assert len(_SpyModel.fits) == 2 * 5 * (1 + 3)  # per component: 5 outer fits, 3 inner fits in each
    assert np.isfinite(fusion.fused["both"]).all()


def test_fusion_of_an_informative_and_a_noise_component_matches_the_informative_one() -> None:
    generator = np.random.default_rng(4)
    y = generator.permutation(np.repeat([0, 1], [200, 100]))
    informative = (1.2 * y + generator.normal(size=len(y)))[:, None]
    noise = generator.normal(size=(len(y), 1))
    def linear() -> object:
        return make_pipeline(StandardScaler(), LogisticRegression())
    components = [Component("informative", linear, informative), Component("noise", linear, noise)]
    fusion = nested_fusion(components, y, repeated_kfold(y, 5, 1, 0)[0], {"fused": ("informative", "noise")})
    informative_auc = roc_auc_score(y, fusion.component_scores["informative"])
    assert roc_auc_score(y, fusion.component_scores["noise"]) == pytest.approx(0.5, abs=0.08)
    assert roc_auc_score(y, fusion.fused["fused"]) == pytest.approx(informative_auc, abs=0.02)


def test_conformal_sets_keep_their_coverage_in_each_class() -> None:
    X, y = _traits(4000, seed=9)
    probabilities = _out_of_fold_probabilities(X, y)
    check = repeated_split_coverage(probabilities, y, coverage=0.9, repeats=100)
    for genotype in ("wildtype", "mutant"):
        # the guarantee: at least 90 %, and at most 90 % + 1/(n+1) on average; 2 points of slack for the repeats
        assert 0.88 <= check[genotype]["mean"] <= 0.92, (genotype, check[genotype])
    assert 0.0 < check["uncertain_fraction"]["mean"] < 1.0
    # weaker traits (half the effect): the classes overlap more, and more answers are "uncertain"
    X_weak, y_weak = _traits(4000, seed=9, effect=0.5)
    weak = repeated_split_coverage(_out_of_fold_probabilities(X_weak, y_weak), y_weak, coverage=0.9, repeats=100)
    assert weak["uncertain_fraction"]["mean"] > check["uncertain_fraction"]["mean"] + 0.05
    assert 0.88 <= weak["mutant"]["mean"] <= 0.92


def test_conformal_with_too_few_patients_of_a_class_never_rules_that_class_out() -> None:
    conformal = ClassConditionalConformal(0.9).fit(np.array([0.1, 0.2, 0.3, 0.9, 0.8]), np.array([0, 0, 0, 1, 1]))
    sets = conformal.predict_sets(np.array([0.01, 0.99]))
    assert sets.all()  # 3 wildtype and 2 mutants cannot support a 90 % quantile: both classes stay in every set
    restored = ClassConditionalConformal.from_dict(json.loads(json.dumps(conformal.as_dict())))
    assert np.array_equal(restored.predict_sets(np.array([0.01, 0.99])), sets)
    report = coverage_report(sets, np.array([0, 1]))
    assert report["uncertain_fraction"] == 1.0 and report["coverage"]["overall"] == 1.0
    with pytest.raises(ValueError, match="coverage"):
        ClassConditionalConformal(1.5).fit(np.array([0.1, 0.9]), np.array([0, 1]))


def test_conformal_sets_at_another_coverage_come_from_the_stored_calibration_scores() -> None:
    X, y = _traits(600, seed=5)
    probabilities = _out_of_fold_probabilities(X, y)
    stored = ClassConditionalConformal.from_dict(json.loads(json.dumps(ClassConditionalConformal(0.9).fit(probabilities, y).as_dict())))
    for coverage in (0.6, 0.8, 0.95):
        fresh = ClassConditionalConformal(coverage).fit(probabilities, y)
        assert np.array_equal(stored.at_coverage(coverage).predict_sets(probabilities), fresh.predict_sets(probabilities))
    # a lower coverage can only shrink the sets: fewer "uncertain" answers
    assert stored.at_coverage(0.6).predict_sets(probabilities).all(axis=1).mean() < stored.predict_sets(probabilities).all(axis=1).mean()
    # a record from before the scores were stored gives its own coverage only, and says so
    old = stored.as_dict()
    del old["calibration_scores"]
    with pytest.raises(ValueError, match="only their 90% thresholds"):
        ClassConditionalConformal.from_dict(old).at_coverage(0.8)


@pytest.fixture(scope="module")
def fusion_run(perfusion_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``idh-predictor fusion`` on the 16-patient cohort: its report folder and its bundle."""
    folder = tmp_path_factory.mktemp("fusion")
    out, bundle = folder / "fusion", folder / "fusion-bundle"
    assert main(["fusion", str(perfusion_cohort), "--out", str(out), "--folds", "2", "--inner-folds", "2",
                 "--epochs", "3", "--coverage", "0.8", "--save-model", str(bundle)]) == 0
    return out, bundle


def test_fusion_command_reports_calibration_and_prediction_sets(perfusion_cohort: Path, fusion_run: tuple[Path, Path],
                                                                tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, bundle = fusion_run
    report = json.loads((out / "report.json").read_text())
    for key in ("auc", "brier", "ece", "coverage", "uncertain_fraction"):
        assert key in report, key
    assert set(report["coverage"]) == {"overall", "mutant", "wildtype"}
    assert report["inputs"] == ["DLR", "perfusion LSTM", "age"] and report["patients"] == 16
    names = [r["name"] for r in report["results"]]
    assert {"DLR", "perfusion LSTM", "age", "Fusion: DLR + perfusion + age", "Fusion: DLR + age (no DSC)"} <= set(names)
    assert 0.0 <= report["brier"] <= 1.0 and (out / "reliability.png").stat().st_size > 0
    assert "Prediction sets" in (out / "table.md").read_text()
    assert main(["fusion", str(perfusion_cohort), "--out", str(tmp_path / "bad"), "--coverage", "90"]) == 2

    # a new patient: one calibrated answer with its prediction set, from the bundle's own components
    case = case_folders(perfusion_cohort)[0]
    capsys.readouterr()
    assert main(["predict", str(case), "--fusion-model", str(bundle), "--age", "50"]) == 0
    answer = json.loads(capsys.readouterr().out)["fusion"]
    assert answer["inputs_used"] == ["DLR", "perfusion LSTM", "age"] and answer["coverage"] == 0.8
    assert answer["prediction_set"] in ("mutant", "wildtype", "uncertain", "empty")
    assert answer["predicted_class"] == ("mutant" if answer["idh_mutant_probability"] >= 0.5 else "wildtype")
    assert answer["validation"]["labels"] == "simulated (digital phantom)" and "auc" in answer["validation"]
    assert answer["guarantee"].endswith("on a real scan the coverage is unverified)")
    # the same patient's prediction set at another coverage, from the bundle's calibration scores
    assert main(["predict", str(case), "--fusion-model", str(bundle), "--age", "50", "--coverage", "0.6"]) == 0
    at_60 = json.loads(capsys.readouterr().out)["fusion"]
    assert at_60["coverage"] == 0.6 and at_60["idh_mutant_probability"] == answer["idh_mutant_probability"]
    assert main(["predict", str(case), "--fusion-model", str(bundle), "--age", "50", "--coverage", "1.5"]) == 2
    # the same patient without its DSC series: a DLR + age answer that says so
    without_dsc = tmp_path / case.name
    shutil.copytree(case, without_dsc)
    for dsc in without_dsc.glob("*_dsc*"):
        dsc.unlink()
    assert main(["predict", str(without_dsc), "--fusion-model", str(bundle), "--age", "50"]) == 0
    answer = json.loads(capsys.readouterr().out)["fusion"]
    assert answer["inputs_used"] == ["DLR", "age"] and answer["stacker"] == "Fusion: DLR + age (no DSC)"
    assert main(["predict", str(case), "--fusion-model", str(bundle)]) == 2  # no age


def _sub_cohort(cohort: Path, folder: Path, per_class: int) -> Path:
    """A copy of ``cohort`` with its first ``per_class`` patients of each genotype."""
    lines = (cohort / "clinical.csv").read_text().splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    idh = header.split(",").index("idh")
    kept = [row for genotype in ("mutant", "wildtype") for row in [r for r in rows if r[idh] == genotype][:per_class]]
    folder.mkdir()
    for row in kept:
        shutil.copytree(cohort / row[0], folder / row[0])
    (folder / "clinical.csv").write_text("\n".join([header] + [",".join(r) for r in kept]) + "\n")
    return folder


def test_deployment_mode_validation_on_reference_and_cnn_masks(perfusion_cohort: Path, fusion_run: tuple[Path, Path],
                                                                tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, trained = fusion_run
    bundle, dlr_bundle = tmp_path / "bundle", tmp_path / "dlr"
    shutil.copytree(trained, bundle)
    shutil.copytree(trained / "dlr", dlr_bundle)
    cohort = _sub_cohort(perfusion_cohort, tmp_path / "held-out", per_class=2)
    out = tmp_path / "deployment"
    assert main(["validate-deployment", str(cohort), "--out", str(out), "--fusion-model", str(bundle),
                 "--dlr-model", str(dlr_bundle), "--record"]) == 0
    report = json.loads((out / "report.json").read_text())
    # The 2-D CNN finds no tumour in PHANTOM-007 (mutant; 0.16 mL of its 48 mL before the phantom's
    # rims gained non-enhancing tumour beyond them, none of its 58 mL now): predict refuses an empty
    # mask, and so does the validation, which says so and leaves the case out of both columns.
    assert report["refused_on_cnn_masks"] == ["PHANTOM-007"]
    assert report["patients"] == 3 and report["mutant"] == 1 and report["labels"] == "simulated (digital phantom)"
    models = report["models"]
    assert set(models) == {"DLR (fusion's own)", "DLR (dlr)", "Fusion: DLR + perfusion + age", "Fusion: DLR + age (no DSC)"}
    for entry in models.values():
        assert set(entry) == {"reference", "CNN", "delong_cnn_vs_reference"}
        assert 0.0 <= entry["CNN"]["auc"]["value"] <= 1.0 and 0.0 <= entry["CNN"]["brier"] <= 1.0
    assert set(models["Fusion: DLR + perfusion + age"]["CNN"]["coverage"]) == {"overall", "mutant", "wildtype"}
    rows = (out / "per_case.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 4 and len(list(out.glob("cnn-masks-*/*_seg.nii.gz"))) == 4
    with open(out / "per_case.csv", newline="", encoding="utf-8") as handle:
        quality = {(r["case_id"], r["masks"]): r["quality"] for r in csv.DictReader(handle)}
    assert quality[("PHANTOM-007", "reference")] == "pass" and quality[("PHANTOM-007", "CNN")].startswith("refused:")
    assert "refused by quality control on the CNN path: PHANTOM-007" in (out / "table.md").read_text()
    # the reference rows score the reference mask itself (Dice 1); the CNN's mask is a different one
    dice = {row.split(",")[3]: float(row.split(",")[5]) for row in rows[1:3]}
    assert dice["reference"] == 1.0 and dice["CNN"] < 1.0

    # recorded beside the cross-validated figures, and shown with the masks they hold for
    case = case_folders(cohort)[0]
    without_seg = tmp_path / case.name
    shutil.copytree(case, without_seg)
    for seg in without_seg.glob("*_seg*"):
        seg.unlink()
    capsys.readouterr()
    assert main(["predict", str(without_seg), "--fusion-model", str(bundle), "--age", "50"]) == 0
    result = json.loads(capsys.readouterr().out)
    answer = result["fusion"]
    # no _seg: DLR and the DSC analysis both work inside the CNN's mask, as validated
    assert answer["inputs_used"] == ["DLR", "perfusion LSTM", "age"] and answer["mask"].startswith("segmented by")
    assert answer["deployment_validation"]["CNN"]["masks"] == "CNN (segmentation-flair-t1ce)"
    assert "CNN (segmentation-flair-t1ce) masks, 3 held-out" in describe_fusion(answer)
    dlr_record = json.loads((dlr_bundle / "model.json").read_text())["metrics"]
    assert {"held_out_simulated_reference_masks", "held_out_simulated_cnn_masks"} <= set(dlr_record)
    shown = describe_prediction({**result["dlr"], "model_metrics": dlr_record})["validation"]
    assert "the cohort's reference masks" in shown and "on CNN (segmentation-flair-t1ce) masks, 3 held-out" in shown


def test_deployment_validation_says_so_when_refusals_leave_one_genotype() -> None:
    from IDHPredictorLib.errors import InputError
    from IDHPredictorLib.fusion.deployment import CNN, REFERENCE, _results

    rows = [{"case_id": "A", "idh_mutant": 1, "masks": REFERENCE, "m probability": 0.7},
            {"case_id": "A", "idh_mutant": 1, "masks": CNN, "quality": "refused: no tumour"},
            {"case_id": "B", "idh_mutant": 0, "masks": REFERENCE, "m probability": 0.2},
            {"case_id": "B", "idh_mutant": 0, "masks": CNN, "m probability": 0.3}]
    with pytest.raises(InputError, match=r"refused on the CNN path: A"):
        _results(rows, {}, ["m"], seed=0)
