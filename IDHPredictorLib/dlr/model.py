"""The DLR classifier as scikit-learn pipelines, and the fitted model as a bundle.

    descriptors -> FisherVectorEncoder (GMM) -> Welch t-test p<0.05 -> top-k F-score -> scaler -> linear SVM (C=1)

k is fixed or, with ``k="auto"``, chosen by an inner stratified 5-fold CV on the training fold
(nested inside whatever outer validation runs). The standard scaler is ours: Fisher vector entries
are ~1/sqrt(16384) in size, where an unscaled C=1 SVM would hardly move off its margin.

A saved model keeps only arrays (GMM, selected columns, scaler, SVM weights, Platt scaling of
the out-of-fold scores) in ``parameters.npz``: no pickles, so a bundle loads safely and across
scikit-learn versions (Slicer ships its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ..bundle import read_bundle, write_bundle
from ..errors import InputError
from ..validation.calibration import PlattCalibrator
from .fisher import FisherVectorEncoder, improved_fisher_vector
from .selection import FScoreSelector, WelchTTestSelector

KIND = "dlr"
PARAMETERS = "parameters.npz"
K_CANDIDATES = (8, 16, 32, 64, 128, 256)


def selection_classifier(k: int | str = "auto", seed: int = 0, impute: bool = False) -> Pipeline | GridSearchCV:
    """t-test -> F-score top k -> scaler -> linear SVM; ``impute`` fills non-finite features (radiomics)."""
    steps = [("impute", SimpleImputer(strategy="median"))] if impute else []
    steps += [("ttest", WelchTTestSelector(alpha=0.05)), ("fscore", FScoreSelector(32 if k == "auto" else int(k))),
              ("scale", StandardScaler()), ("svm", SVC(kernel="linear", C=1.0))]
    pipeline = Pipeline(steps)
    if k != "auto":
        return pipeline
    return GridSearchCV(pipeline, {"fscore__k": list(K_CANDIDATES)}, scoring="roc_auc",
                        cv=SmallClassStratifiedKFold(5, seed))


class SmallClassStratifiedKFold(StratifiedKFold):
    """Stratified k-fold for the inner choice of k, with at most as many folds as the smaller
    class has patients (at least 2): on a small training fold (e.g. 3 mutants) five folds would
    leave some without a mutant, whose AUC is undefined, and scikit-learn warns on every fit."""

    def __init__(self, n_splits: int = 5, random_state: int = 0) -> None:
        super().__init__(n_splits, shuffle=True, random_state=random_state)

    def get_n_splits(self, X: object = None, y: object = None, groups: object = None) -> int:
        if y is None:
            return self.n_splits
        smallest = int(np.bincount(np.unique(np.asarray(y), return_inverse=True)[1]).min())
        return max(2, min(self.n_splits, smallest))

    def split(self, X: object, y: object = None, groups: object = None):  # noqa: ANN201 (sklearn's generator)
        folds = StratifiedKFold(self.get_n_splits(X, y), shuffle=True, random_state=self.random_state)
        return folds.split(X, y, groups)


def dlr_pipeline(k: int | str = "auto", n_components: int = 64, seed: int = 0) -> Pipeline:
    """Fisher vector encoder + selection + SVM, fitted end to end on a training fold."""
    return Pipeline([("encoder", FisherVectorEncoder(n_components=n_components, random_state=seed)),
                     ("classifier", selection_classifier(k, seed))])


@dataclass
class DlrPrediction:
    """Probability of IDH mutation, the SVM's decision value and the features that pushed it most."""

    probability: float
    decision: float
    top_features: list[dict[str, float | str]]


@dataclass
class DlrModel:
    """A fitted DLR model as plain arrays (see the module docstring)."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    columns: np.ndarray
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    coef: np.ndarray
    intercept: float
    platt: tuple[float, float]
    feature_names: list[str]
    record: dict = field(default_factory=dict)

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline, oof_scores: np.ndarray, y: np.ndarray, layer: str,
                      record: dict) -> DlrModel:
        """Arrays of a fitted ``dlr_pipeline``; Platt scaling fitted on out-of-fold decision scores."""
        encoder: FisherVectorEncoder = pipeline["encoder"]
        classifier = pipeline["classifier"]
        chosen = classifier.best_estimator_ if isinstance(classifier, GridSearchCV) else classifier
        columns = np.flatnonzero(chosen["ttest"].get_support())[chosen["fscore"].get_support()]
        tested = np.isfinite(oof_scores)
        calibration = PlattCalibrator().fit(oof_scores[tested], np.asarray(y)[tested])
        names = encoder.feature_names(layer)
        return cls(encoder.weights_, encoder.means_, encoder.variances_, columns, chosen["scale"].mean_,
                   chosen["scale"].scale_, chosen["svm"].coef_.ravel(), float(chosen["svm"].intercept_[0]),
                   (calibration.slope_, calibration.offset_),
                   [names[c] for c in columns], {**record, "selected_features": len(columns)})

    def predict(self, descriptors: np.ndarray, top: int = 10) -> DlrPrediction:
        """Encode one patient's descriptors and classify them."""
        vector = improved_fisher_vector(descriptors, self.weights, self.means, self.variances)
        scaled = (vector[self.columns] - self.scaler_mean) / self.scaler_scale
        contributions = self.coef * scaled
        decision = float(contributions.sum() + self.intercept)
        slope, offset = self.platt
        probability = float(1.0 / (1.0 + np.exp(-(slope * decision + offset))))
        order = np.argsort(-np.abs(contributions))[:top]
        top_features = [{"feature": self.feature_names[i], "contribution": float(contributions[i]),
                         "towards": "mutant" if contributions[i] > 0 else "wildtype"} for i in order]
        return DlrPrediction(probability, decision, top_features)

    def save(self, folder: str | Path) -> Path:
        """Write the bundle (model.json + parameters.npz) all-or-nothing."""
        arrays = {"weights": self.weights, "means": self.means, "variances": self.variances, "columns": self.columns,
                  "scaler_mean": self.scaler_mean, "scaler_scale": self.scaler_scale, "coef": self.coef,
                  "intercept": np.array(self.intercept), "platt": np.array(self.platt),
                  "feature_names": np.array(self.feature_names)}

        def write(path: Path) -> None:
            with open(path, "wb") as handle:
                np.savez(handle, **arrays)

        return write_bundle(folder, KIND, self.record, {PARAMETERS: write})

    @classmethod
    def load(cls, folder: str | Path) -> DlrModel:
        """Read a DLR bundle; a corrupt one raises ``InputError`` naming it."""
        folder = Path(folder)
        record = read_bundle(folder, KIND)
        try:
            with np.load(folder / PARAMETERS, allow_pickle=False) as stored:
                return cls(stored["weights"], stored["means"], stored["variances"], stored["columns"],
                           stored["scaler_mean"], stored["scaler_scale"], stored["coef"], float(stored["intercept"]),
                           tuple(float(v) for v in stored["platt"]), [str(n) for n in stored["feature_names"]], record)
        except (KeyError, ValueError, OSError) as error:
            raise InputError(folder / PARAMETERS, f"is not a valid DLR parameter file ({error})",
                             "Re-install the bundle or re-create it with idh-predictor dlr --save-model") from error
