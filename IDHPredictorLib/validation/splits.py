"""Train/test splits by patient: leave-one-out, temporal (by diagnosis date) and repeated
stratified k-fold. ``groups`` keeps every sample of a patient on one side."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold

Split = tuple[np.ndarray, np.ndarray]


def _groups(n: int, groups: Sequence[object] | None) -> np.ndarray:
    return np.arange(n) if groups is None else np.asarray(groups)


def leave_one_out(n: int, groups: Sequence[object] | None = None) -> list[Split]:
    """One split per patient: that patient tested, all others trained on."""
    groups = _groups(n, groups)
    return list(LeaveOneGroupOut().split(np.zeros(n), groups=groups))


def temporal(dates: Sequence[dt.date], split_date: dt.date) -> list[Split]:
    """Train on patients diagnosed before ``split_date``, test on the rest (the paper: 2015)."""
    dates = np.asarray(dates)
    before = np.array([d < split_date for d in dates])
    if before.all() or not before.any():
        raise ValueError(f"every patient is on one side of {split_date}; choose another --split-date")
    return [(np.flatnonzero(before), np.flatnonzero(~before))]


def repeated_kfold(y: Sequence[int], folds: int = 5, repeats: int = 1, seed: int = 0,
                   groups: Sequence[object] | None = None) -> list[list[Split]]:
    """``repeats`` lists of stratified ``folds``-fold splits, patients (groups) never split."""
    y = np.asarray(y)
    groups = _groups(len(y), groups)
    return [list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed + r).split(np.zeros(len(y)), y, groups))
            for r in range(repeats)]


def check_split_plan(y: Sequence[int], source: object, folds: int | None = None, test_fraction: float | None = None) -> None:
    """Refuse, before any work, a cohort that the requested splits cannot serve: fewer than 2
    patients of a genotype, fewer than 2 folds, a test fraction outside (0, 1), or fewer than 2
    patients of a genotype left for the folds after the (stratified) test split (then some training fold would lack it;
    fewer than ``folds`` is allowed: stratified folds then leave that class out of some test folds
    only, and the pooled out-of-fold scores still cover every patient)."""
    from ..errors import InputError

    y = np.asarray(y, int)
    counts = {"IDH-mutant": int(y.sum()), "IDH-wildtype": int(len(y) - y.sum())}
    fix = "Add patients of the missing genotype to clinical.csv and the cohort folder"
    if min(counts.values()) == 0:
        raise InputError(source, f"holds one genotype only ({counts})", fix)
    if min(counts.values()) < 2:
        raise InputError(source, f"holds a single patient of one genotype ({counts}): a training fold without them would "
                         "hold one genotype only", fix)
    if folds is not None and folds < 2:
        raise InputError(source, f"--folds {folds}: cross-validation needs at least 2 folds", "Use --folds 2 or more (default 5)")
    development = counts
    if test_fraction is not None:
        if not 0 < test_fraction < 1:
            raise InputError(source, f"--test-fraction {test_fraction} is not between 0 and 1", "Use e.g. --test-fraction 0.1")
        test_size = test_split_size(len(y), test_fraction)
        development = {k: v - max(1, round(v * test_size / len(y))) for k, v in counts.items()}
    if folds is not None and min(development.values()) < 2:
        raise InputError(source, f"cross-validation needs at least 2 patients of each genotype outside the test split, "
                         f"the cohort has {development}", "Add patients of the rarer genotype, or lower --test-fraction")
    if folds is not None and folds > max(development.values()):
        raise InputError(source, f"{folds} stratified folds need at least {folds} patients of one genotype outside the "
                         f"test split, the cohort has {development}", f"Use --folds {max(development.values())} or add patients")


def test_split_size(patients: int, test_fraction: float) -> int:
    """Patients in a stratified test split: the fraction rounded up, at least 2 (one per genotype)."""
    return max(2, int(np.ceil(test_fraction * patients)))
