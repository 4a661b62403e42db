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
