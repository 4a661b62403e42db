"""The digital phantom: reproducible, anatomically sane, genotype-linked, DSC physics, realistic."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from IDHPredictorLib.cli import main
from IDHPredictorLib.io.cohort import brats_case_folders, case_folders
from IDHPredictorLib.phantom.anatomy import SMALL_GRID, deformed_anatomy
from IDHPredictorLib.phantom.cohort import PhantomOptions, clinical_table, generate_cohort
from IDHPredictorLib.phantom.realism import contrast_profile
from IDHPredictorLib.phantom.traits import draw_traits
from IDHPredictorLib.phantom.tumour import make_tumour


def _read(folder: Path, name: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{folder.name}_{name}.nii.gz")))


def _files(root: Path) -> dict[str, bytes]:
    """Every file's bytes; phantom.json (the run's record, with its time) as its options only."""
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    files["phantom.json"] = json.dumps(json.loads(files["phantom.json"])["options"]).encode()
    return files


def _clinical(root: Path) -> list[dict[str, str]]:
    with open(root / "clinical.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_same_seed_same_bytes_whatever_the_workers_different_seed_different_data(tmp_path: Path) -> None:
    first = _files(generate_cohort(tmp_path / "a", PhantomOptions(cases=2, seed=5, size="small")))
    again = _files(generate_cohort(tmp_path / "b", PhantomOptions(cases=2, seed=5, size="small")))
    other = _files(generate_cohort(tmp_path / "c", PhantomOptions(cases=2, seed=6, size="small")))
    serial = _files(generate_cohort(tmp_path / "d", PhantomOptions(cases=2, seed=5, size="small"), workers=1))
    assert first == again == serial
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first if name.endswith(".nii.gz"))


def test_each_case_has_the_brats_files_and_grid(small_cohort: Path) -> None:
    for case in case_folders(small_cohort):
        names = {p.name for p in case.iterdir()}
        assert names == {f"{case.name}_{s}" for s in ("t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz", "flair.nii.gz",
                                                        "seg.nii.gz", "dsc.nii.gz", "dsc.json")}
        t1 = sitk.ReadImage(str(case / f"{case.name}_t1.nii.gz"))
        assert t1.GetSize() == (96, 96, 62) and t1.GetSpacing() == (2.5, 2.5, 2.5)


def test_labels_are_nested_inside_the_brain_with_oedema_around_the_core(small_cohort: Path) -> None:
    for case in case_folders(small_cohort):
        labels = _read(case, "seg")
        brain = _read(case, "t1") > 0
        assert set(np.unique(labels)) <= {0, 1, 2, 4}
        whole, core = labels > 0, np.isin(labels, (1, 4))
        assert core.sum() > 0 and (whole & ~core).sum() > 0
        assert not (whole & ~brain).any(), f"{case.name}: tumour outside the brain"
        shell = ndimage.binary_dilation(core) & ~core  # voxels just outside the core
        around = labels[shell & brain]
        assert (around == 2).mean() > 0.9, f"{case.name}: core not surrounded by oedema"


def _non_enhancing_share_of_core_surface(labels: np.ndarray) -> float:
    core = np.isin(labels, (1, 4))
    surface = core & ~ndimage.binary_erosion(core)
    return float((surface & (labels == 1)).sum() / surface.sum())


def test_most_enhancing_tumours_have_non_enhancing_tumour_beyond_the_rim() -> None:
    """As in the real enhancing cases (28-86 % of the core's surface non-enhancing), not a rim that
    always closes the core (0-13 %): the core of a tumour with a thick rim and central necrosis
    reaches past the rim over a third or more of its surface in most tumours, never all of it."""
    shares = []
    for index in range(12):
        rng = np.random.default_rng([7, index, 2])
        anatomy = deformed_anatomy(rng, SMALL_GRID)
        ring_with_necrosis = dataclasses.replace(draw_traits(np.random.default_rng([7, index]), idh_mutant=False),
                                                 enhancing=True, ring_thickness=0.3, necrosis_fraction=0.5)
        shares.append(_non_enhancing_share_of_core_surface(make_tumour(rng, anatomy, ring_with_necrosis).labels))
    assert sum(share > 0.3 for share in shares) >= 4, shares
    assert max(shares) < 0.95, shares


# Latent traits a model could learn from before surgery: imaging, age and rCBV (grade is
# histological; sex and the diagnosis date carry no genotype signal).
NOT_PREOPERATIVE = {"case_id", "idh", "sex", "grade", "diagnosis_date"}


@pytest.mark.parametrize("mix", ["choi", "li"])
def test_traits_are_as_weak_as_in_real_cohorts(mix: str) -> None:
    """Each single trait separates the genotypes with AUC <= 0.80; a cross-validated logistic
    regression on all of them reaches 0.85-0.93 (4,000 patients: AUC standard error ~0.005)."""
    rows = [row for _, row in clinical_table(PhantomOptions(cases=4000, seed=3, mix=mix))]
    mutant = np.array([row["idh"] == "mutant" for row in rows])
    columns = [c for c in rows[0] if c not in NOT_PREOPERATIVE]
    X = np.array([[float(row[c]) for c in columns] for row in rows])
    for index, column in enumerate(columns):
        auc = roc_auc_score(mutant, X[:, index])
        assert max(auc, 1 - auc) <= 0.80, f"{mix}: {column} alone separates the genotypes with AUC {max(auc, 1 - auc):.3f}"
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    combined = roc_auc_score(mutant, cross_val_predict(model, X, mutant, cv=folds, method="predict_proba")[:, 1])
    assert 0.85 <= combined <= 0.93, f"{mix}: all traits together give AUC {combined:.3f}"
    for column in ("rcbv_true", "age"):  # the literature's direction: lower in IDH-mutant tumours
        assert X[mutant, columns.index(column)].mean() < X[~mutant, columns.index(column)].mean(), column
    mismatch = X[:, columns.index("mismatch")] > 0  # a binary sign, specific to the mutants
    assert mismatch[~mutant].mean() < 0.02 and 0.1 < mismatch[mutant].mean() < 0.5


def test_traits_only_writes_the_full_cohorts_rows(tmp_path: Path) -> None:
    options = PhantomOptions(cases=3, seed=9, size="small")
    assert main(["phantom", "--traits-only", "--cases", "3", "--seed", "9", "--out", str(tmp_path / "traits")]) == 0
    assert sorted(tmp_path.joinpath("traits").iterdir()) == [tmp_path / "traits" / "clinical.csv"]
    full = generate_cohort(tmp_path / "full", options)
    assert _clinical(tmp_path / "traits") == _clinical(full)


def test_mutant_fraction_sets_the_class_balance_and_nothing_else(tmp_path: Path) -> None:
    """--mutant-fraction 0.5 gives a balanced sample; a patient drawn as the same genotype keeps
    the traits of the default cohort (traits come from the patient's own stream)."""
    default, balanced = (clinical_table(PhantomOptions(cases=24, seed=5, size="small", mutant_fraction=f))
                         for f in (None, 0.5))
    assert sum(row["idh"] == "mutant" for _, row in default) == round(24 * 125 / 463)  # Choi et al. 2019 prevalence
    assert sum(row["idh"] == "mutant" for _, row in balanced) == 12
    same = [(a, b) for (_, a), (_, b) in zip(default, balanced) if a["idh"] == b["idh"]]
    assert same and all(a == b for a, b in same)
    assert main(["phantom", "--traits-only", "--cases", "4", "--mutant-fraction", "1.5", "--out", str(tmp_path)]) == 2


def test_effect_zero_removes_the_genotype_link() -> None:
    table = clinical_table(PhantomOptions(cases=400, seed=3, size="small", effect=0.0))
    mutant = np.array([row["idh"] == "mutant" for _, row in table])
    rcbv = np.array([row["rcbv_true"] for _, row in table])
    assert abs(roc_auc_score(~mutant, rcbv) - 0.5) < 0.1


def test_permute_labels_breaks_the_link_and_keeps_the_images(tmp_path: Path) -> None:
    table = clinical_table(PhantomOptions(cases=400, seed=3, size="small", permute_labels=True))
    mutant = np.array([row["idh"] == "mutant" for _, row in table])
    rcbv = np.array([row["rcbv_true"] for _, row in table])
    assert abs(roc_auc_score(~mutant, rcbv) - 0.5) < 0.1
    plain = generate_cohort(tmp_path / "plain", PhantomOptions(cases=4, seed=9, size="small"))
    permuted = generate_cohort(tmp_path / "perm", PhantomOptions(cases=4, seed=9, size="small", permute_labels=True))
    images = {k: v for k, v in _files(plain).items() if k.endswith(".nii.gz")}
    assert images == {k: v for k, v in _files(permuted).items() if k.endswith(".nii.gz")}
    labels_plain = [r["idh"] for r in _clinical(plain)]
    labels_perm = [r["idh"] for r in _clinical(permuted)]
    assert sorted(labels_plain) == sorted(labels_perm) and labels_plain != labels_perm


def test_dsc_drops_at_the_bolus_and_the_aif_leads_tissue(small_cohort: Path) -> None:
    for case in case_folders(small_cohort):
        series = sitk.ReadImage(str(case / f"{case.name}_dsc.nii.gz"))
        sidecar = json.loads((case / f"{case.name}_dsc.json").read_text(encoding="utf-8"))
        assert series.GetDimension() == 4 and series.GetSpacing()[3] == pytest.approx(sidecar["RepetitionTime"])
        assert 1.3 < sidecar["RepetitionTime"] < 1.7 and 0.025 < sidecar["EchoTime"] < 0.035
        structural = sitk.ReadImage(str(case / f"{case.name}_t1.nii.gz"))
        assert series.GetSpacing()[:3] != structural.GetSpacing()  # masks must be resampled into DSC space
        frames = sitk.GetArrayFromImage(series).astype(float)  # (t, z, y, x)
        baseline = frames[:5].mean(axis=0)
        tissue = frames[:, baseline > np.percentile(baseline, 70)].mean(axis=1)
        aif = np.mean([frames[:, z, y, x] for x, y, z in sidecar["AifVoxels"]], axis=0)
        arrival_frame = int(sidecar["BolusArrivalTime"] / sidecar["RepetitionTime"])
        tissue_rel, aif_rel = tissue / tissue[:5].mean(), aif / aif[:5].mean()
        assert tissue_rel.argmin() > arrival_frame and tissue_rel.min() < 0.95
        assert aif_rel.argmin() < tissue_rel.argmin(), f"{case.name}: AIF does not peak first"
        assert aif_rel.min() < tissue_rel.min() - 0.2, f"{case.name}: AIF not deeper than tissue"


KEY_CONTRASTS = [("flair", "oedema"), ("flair", "core"), ("flair", "csf"), ("t2", "oedema"), ("t2", "core"),
                 ("t1", "oedema"), ("t1", "csf"), ("t1ce", "enhancing"), ("t1ce", "core")]


def test_contrast_matches_the_real_cases(full_cohort: Path, realdata: Path) -> None:
    """Cohort-mean contrast (z-score vs white matter) within the real cases' range +- 0.6 sd."""
    def profiles(root: Path) -> list[dict[str, dict[str, float]]]:
        out = []
        for case in brats_case_folders(root):
            images = {m: _read(case, m) for m in ("t1", "t1ce", "t2", "flair")}
            out.append(contrast_profile(images, _read(case, "seg")))
        return out

    real, phantom = profiles(realdata), profiles(full_cohort)
    for modality, region in KEY_CONTRASTS:
        real_values = [p[modality][region] for p in real if region in p[modality]]
        phantom_values = [p[modality][region] for p in phantom if region in p[modality]]
        assert phantom_values, f"no phantom case has {region}"
        mean = float(np.mean(phantom_values))
        assert min(real_values) - 0.6 <= mean <= max(real_values) + 0.6, \
            f"{modality} {region}: phantom {mean:.2f} vs real {real_values}"
