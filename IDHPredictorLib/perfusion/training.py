"""Training and inference of the attention-LSTM at patient level: a patient's 8 windows stay on
one side of every split, and a patient's probability is the mean over its windows."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from joblib import delayed
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from torch import nn

from ..compute import ordered_results
from ..segmentation.inference import choose_device
from ..validation.calibration import logit
from ..validation.splits import Split
from .network import AttentionLSTM, LstmArchitecture


@dataclass(frozen=True)
class LstmTraining:
    """Adam, early stopping on a validation split of the training patients (about 8:1, as the paper)."""

    epochs: int = 150
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 20
    validation_fraction: float = 0.11
    seed: int = 0
    device: str = "auto"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _flatten(windows: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, W, C, L) windows and (P,) labels -> (P*W, C, L) samples and their labels."""
    samples = torch.from_numpy(windows.reshape(-1, *windows.shape[2:]).astype(np.float32))
    return samples, torch.from_numpy(np.repeat(y, windows.shape[1]).astype(np.float32))


def train_lstm(windows: np.ndarray, y: np.ndarray, options: LstmTraining = LstmTraining(),
               architecture: LstmArchitecture = LstmArchitecture(),  # noqa: B008 (frozen dataclass: immutable default)
               progress: Callable[[int, int], None] | None = None) -> tuple[AttentionLSTM, list[dict[str, float]]]:
    """Fit on patients ``windows`` (P, 8, 5, L) with labels ``y`` (P,); returns the best-validation
    model (on CPU) and the per-epoch history."""
    torch.manual_seed(options.seed)
    device = choose_device(options.device)
    patients = np.arange(len(y))
    validation_size = max(2, int(round(options.validation_fraction * len(y))))  # both classes, even when tiny
    # stratified when each genotype can spare a patient (a permuted fold of a small cohort may hold one mutant)
    stratify = y if np.bincount(np.asarray(y, dtype=int)).min() >= 2 else None
    train, validation = train_test_split(patients, test_size=validation_size, stratify=stratify, random_state=options.seed)
    x_train, y_train = _flatten(windows[train], y[train])
    x_val, y_val = _flatten(windows[validation], y[validation])
    model = AttentionLSTM(architecture).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)
    positive = float(y_train.mean())
    loss_function = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - positive) / max(positive, 1e-6), device=device))
    generator = torch.Generator().manual_seed(options.seed)
    best_loss, best_state, since_best, history = np.inf, None, 0, []
    for epoch in range(options.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), options.batch_size):
            batch = order[start:start + options.batch_size]
            logits, _ = model(x_train[batch].to(device))
            loss = loss_function(logits, y_train[batch].to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            validation_loss = float(loss_function(model(x_val.to(device))[0], y_val.to(device)))
        history.append({"epoch": epoch + 1, "loss": total / len(order), "validation_loss": validation_loss})
        if progress:
            progress(epoch + 1, options.epochs)
        if validation_loss < best_loss - 1e-4:
            best_loss, best_state, since_best = validation_loss, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= options.patience:
                break
    model.load_state_dict(best_state)
    if progress:
        progress(options.epochs, options.epochs)
    return model.cpu().eval(), history


def predict_patients(model: AttentionLSTM, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: IDH-mutant probability (mean of its windows' sigmoid) and attention (P, W, L)."""
    samples = torch.from_numpy(windows.reshape(-1, *windows.shape[2:]).astype(np.float32))
    model.eval()
    with torch.no_grad():
        logits, attention = model(samples)
    probabilities = torch.sigmoid(logits).numpy().reshape(windows.shape[:2])
    return probabilities.mean(axis=1), attention.numpy().reshape(*windows.shape[:2], -1)


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the block on one torch thread, whichever process runs it, so that a fold's network
    does not depend on ``--workers`` (a tiny network gains little from more threads, and workers
    run folds side by side)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit_and_predict(windows: np.ndarray, y: np.ndarray, train: np.ndarray, held: np.ndarray,
                     options: LstmTraining) -> tuple[np.ndarray, np.ndarray]:
    """One fold: train on patients ``train``, predict patients ``held`` (on one torch thread)."""
    with single_torch_thread():
        model, _ = train_lstm(windows[train], y[train], options)
        return predict_patients(model, windows[held])


class LstmScorer(BaseEstimator, ClassifierMixin):
    """The attention-LSTM as a scikit-learn classifier over patients' windows (P, W, C, L), so it
    composes with the cross-validation and stacking helpers; ``decision_function`` is the logit of
    the patient's mean window probability (the input Platt scaling and the fusion expect)."""

    def __init__(self, options: LstmTraining = LstmTraining()) -> None:  # noqa: B008 (frozen dataclass)
        self.options = options

    def fit(self, windows: np.ndarray, y: np.ndarray) -> LstmScorer:
        self.classes_ = np.array([0, 1])
        with single_torch_thread():
            self.model_, _ = train_lstm(np.asarray(windows), np.asarray(y, dtype=int), self.options)
        return self

    def decision_function(self, windows: np.ndarray) -> np.ndarray:
        with single_torch_thread():
            probabilities, _ = predict_patients(self.model_, np.asarray(windows))
        return logit(probabilities)


def fold_jobs(windows: np.ndarray, y: np.ndarray, folds: list[Split], options: LstmTraining) -> list:
    """One joblib job per fold, for ``ordered_results``; joblib memory-maps ``windows`` for worker
    processes rather than copying it per job."""
    return [delayed(_fit_and_predict)(windows, y, train, held, options) for train, held in folds]


def out_of_fold_lstm(windows: np.ndarray, y: np.ndarray, folds: list[Split], options: LstmTraining, workers: int = 1,
                     progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Probability (NaN where no fold holds the patient out) and attention (P, W, L) of every
    patient from the model of the fold that held it out; folds in ``workers`` processes."""
    probabilities = np.full(len(y), np.nan)
    attention = np.zeros((len(y), windows.shape[1], windows.shape[-1]))
    for done, ((_, held), (fold_probabilities, fold_attention)) in enumerate(
            zip(folds, ordered_results(fold_jobs(windows, y, folds, options), workers)), start=1):
        probabilities[held], attention[held] = fold_probabilities, fold_attention
        if progress:
            progress(done, len(folds))
    return probabilities, attention
