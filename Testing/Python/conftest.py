"""Shared fixtures: small phantom cohorts generated once per test session (fixed seeds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from IDHPredictorLib.phantom.cohort import PhantomOptions, generate_cohort
from IDHPredictorLib.phantom.realism import real_cases_dir


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small (2.5 mm) phantom patients, seed 11."""
    return generate_cohort(tmp_path_factory.mktemp("cohort") / "small", PhantomOptions(cases=6, seed=11, size="small"))


@pytest.fixture(scope="session")
def full_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three full-size (BraTS 1 mm) phantom patients, seed 21: for realism checks."""
    return generate_cohort(tmp_path_factory.mktemp("cohort") / "full", PhantomOptions(cases=3, seed=21, size="full"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The two real TCGA-LGG cases beside the checkout; skip when they are not there."""
    folder = real_cases_dir()
    if folder is None:
        pytest.skip("real cases not found: set IDHPREDICTOR_REALDATA or put them in ../shared/realdata "
                    "(never in the repository)")
    return folder


@pytest.fixture(scope="session")
def dual_echo_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small phantom patients with dual-echo DSC (<id>_dsc-short beside <id>_dsc), seed 41."""
    return generate_cohort(tmp_path_factory.mktemp("cohort") / "dual-echo",
                           PhantomOptions(cases=2, seed=41, size="small", dual_echo=True))


@pytest.fixture(scope="session")
def perfusion_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sixteen small phantom patients (4 IDH-mutant), seed 31: enough for patient-level folds."""
    return generate_cohort(tmp_path_factory.mktemp("cohort") / "perfusion", PhantomOptions(cases=16, seed=31, size="small"))
