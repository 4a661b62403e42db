"""Stacked fusion of component models (DLR, perfusion LSTM, age, radiomics) by nested
cross-validation: the stacker of each outer fold is fitted only on scores that the components
gave patients they had not been trained on.

For outer fold (train, test): each component is fitted on ``train`` and scores ``test`` (these
are also the component's own out-of-fold scores, reported beside the fusion); inside ``train``,
an inner k-fold gives every training patient an out-of-fold score of each component; the
stacker (standardised logistic regression) is fitted on those and applied to the test
patients' scores. One stacker per input set, so that a patient without DSC gets a DLR + age
answer from a stacker that never relied on perfusion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from joblib import delayed
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..compute import ordered_results
from ..validation.crossval import fold_scores
from ..validation.splits import Split


@dataclass(frozen=True)
class Component:
    """One input of the fusion: a model factory (``fit`` / ``decision_function``) and its
    per-patient input ``X`` (descriptor lists, LSTM windows, or a feature matrix)."""

    name: str
    make_model: Callable[[], object]
    X: Sequence | np.ndarray


class YoungerIsMutant(BaseEstimator, ClassifierMixin):
    """Age as a component score, younger = more likely IDH-mutant (the literature's direction and
    the phantom's); nothing to fit, so a bundle needs no parameters to score a new patient's age."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> YoungerIsMutant:
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return -np.asarray(X, dtype=float)[:, 0]


def make_stacker() -> Pipeline:
    """Standardised component scores -> logistic regression: its output is the fused probability."""
    return make_pipeline(StandardScaler(), LogisticRegression())


@dataclass
class NestedFusion:
    """Out-of-fold results: each component's score and each input set's fused probability."""

    component_scores: dict[str, np.ndarray]
    fused: dict[str, np.ndarray]
    input_sets: dict[str, tuple[str, ...]]


def inner_splits(y: np.ndarray, train: np.ndarray, folds: int, seed: int) -> list[Split]:
    """Stratified k-fold inside the outer training patients (as indices into the whole cohort);
    at most as many folds as the smaller class has patients there."""
    smallest = int(np.bincount(y[train], minlength=2).min())
    splitter = StratifiedKFold(max(2, min(folds, smallest)), shuffle=True, random_state=seed)
    return [(train[a], train[b]) for a, b in splitter.split(train, y[train])]


def nested_fusion(components: Sequence[Component], y: np.ndarray, outer: Sequence[Split],
                  input_sets: dict[str, tuple[str, ...]], inner_folds: int = 3, seed: int = 0, workers: int = 1,
                  progress: Callable[[int, int], None] | None = None,
                  stacker_factory: Callable[[], object] = make_stacker) -> NestedFusion:
    """Nested stacking (module docstring); every component fit is one job, run in ``workers``
    processes. ``input_sets`` names the components each stacker combines."""
    y = np.asarray(y, dtype=int)
    plan = []  # (outer fold, inner fold or None, component, train, test)
    for o, (train, test) in enumerate(outer):
        for component in components:
            plan.append((o, None, component, train, test))
            for i, (inner_train, inner_test) in enumerate(inner_splits(y, train, inner_folds, seed)):
                plan.append((o, i, component, inner_train, inner_test))
    jobs = [delayed(fold_scores)(c.make_model, c.X, y, train, test) for _, _, c, train, test in plan]
    outer_scores = {c.name: np.full(len(y), np.nan) for c in components}
    inner_scores = {(o, c.name): np.full(len(y), np.nan) for o in range(len(outer)) for c in components}
    for done, ((o, i, component, _, test), scores) in enumerate(zip(plan, ordered_results(jobs, workers)), start=1):
        (outer_scores[component.name] if i is None else inner_scores[(o, component.name)])[test] = scores
        if progress:
            progress(done, len(plan))
    fused = {name: np.full(len(y), np.nan) for name in input_sets}
    for o, (train, test) in enumerate(outer):
        for name, members in input_sets.items():
            training = np.column_stack([inner_scores[(o, m)][train] for m in members])
            stacker = stacker_factory().fit(training, y[train])
            fused[name][test] = stacker.predict_proba(np.column_stack([outer_scores[m][test] for m in members]))[:, 1]
    return NestedFusion(outer_scores, fused, dict(input_sets))


def final_stacker(component_scores: dict[str, np.ndarray], y: np.ndarray, members: tuple[str, ...]) -> Pipeline:
    """The stacker a bundle ships: fitted on every patient's out-of-fold component scores."""
    return make_stacker().fit(np.column_stack([component_scores[m] for m in members]), np.asarray(y, dtype=int))
