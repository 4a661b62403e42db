"""Fusion bundles and one patient's fused answer.

A fusion bundle holds its own components, trained on the same cohort as its stackers, so that
the scores it combines have the distribution the stackers were fitted on: ``dlr/`` (a DLR
bundle) and ``perfusion/`` (a perfusion bundle), and in ``model.json`` one stacker per input set
with its conformal thresholds and the range of each input seen in training. The sub-bundles'
``model.json`` files are checksummed like weight files, so the whole is verified on loading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit
from sklearn.pipeline import Pipeline

from ..bundle import read_bundle, write_bundle
from ..catalog import default_model
from ..errors import InputError
from ..quality import QualityReport
from ..validation.calibration import logit
from ..validation.conformal import ClassConditionalConformal, set_label

KIND = "fusion"
DLR_PART, PERFUSION_PART = "dlr", "perfusion"
DEFAULT_FUSION_MODEL = default_model("fusion")  # catalog.json names it


@dataclass
class Stacker:
    """A fitted stacker as plain numbers: standardise the inputs, then a logistic regression; its
    conformal thresholds; each input's training range (to flag a case unlike the training patients)."""

    inputs: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    conformal: ClassConditionalConformal
    ranges: dict[str, tuple[float, float]]

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline, inputs: tuple[str, ...], conformal: ClassConditionalConformal,
                      training_scores: np.ndarray) -> Stacker:
        scaler, regression = pipeline[0], pipeline[-1]
        ranges = {name: (float(np.min(training_scores[:, i])), float(np.max(training_scores[:, i])))
                  for i, name in enumerate(inputs)}
        return cls(tuple(inputs), scaler.mean_, scaler.scale_, regression.coef_.ravel(), float(regression.intercept_[0]),
                   conformal, ranges)

    def probability(self, scores: dict[str, float]) -> float:
        """Fused IDH-mutant probability from the components' scores."""
        z = (np.array([scores[name] for name in self.inputs]) - self.mean) / self.scale
        return float(expit(z @ self.coef + self.intercept))

    def outside_training_range(self, scores: dict[str, float]) -> list[str]:
        """The inputs whose score lies outside what the training patients showed."""
        return [name for name in self.inputs if not self.ranges[name][0] <= scores[name] <= self.ranges[name][1]]

    def as_dict(self) -> dict[str, object]:
        return {"inputs": list(self.inputs), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "conformal": self.conformal.as_dict(),
                "training_ranges": {k: list(v) for k, v in self.ranges.items()}}

    @classmethod
    def from_dict(cls, record: dict) -> Stacker:
        return cls(tuple(record["inputs"]), np.asarray(record["mean"]), np.asarray(record["scale"]),
                   np.asarray(record["coef"]), float(record["intercept"]),
                   ClassConditionalConformal.from_dict(record["conformal"]),
                   {k: (float(v[0]), float(v[1])) for k, v in record["training_ranges"].items()})


def save_fusion_model(folder: str | Path, write_dlr: Callable[[Path], object], write_perfusion: Callable[[Path], object],
                      stackers: dict[str, Stacker],
                      metadata: dict) -> Path:
    """Write the bundle: the two component bundles (``write_dlr(path)``, ``write_perfusion(path)``
    write them) and model.json with the stackers."""
    files = {f"{DLR_PART}/model.json": lambda path: write_dlr(path.parent),
             f"{PERFUSION_PART}/model.json": lambda path: write_perfusion(path.parent)}
    record = {"stackers": {name: s.as_dict() for name, s in stackers.items()},
              "note": "Trained on simulated patients (digital phantom); for research, not diagnosis.", **metadata}
    return write_bundle(folder, KIND, record, files)


def load_fusion_model(folder: str | Path) -> tuple[dict[str, Stacker], dict]:
    """The stackers by input set and the bundle's model.json (checksums verified)."""
    record = read_bundle(folder, KIND)
    try:
        return {name: Stacker.from_dict(value) for name, value in record["stackers"].items()}, record
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(Path(folder) / "model.json", f"has no valid stackers ({error})",
                         "Re-create it with idh-predictor fusion --save-model") from error


def fused_answer(stackers: dict[str, Stacker], record: dict, scores: dict[str, float],
                 quality_warnings: list[str], coverage: float | None = None) -> dict[str, object]:
    """The fused answer for the components' ``scores``: the stacker of the richest input set the
    patient has, its calibrated probability, prediction set (at the bundle's coverage, or at
    ``coverage`` from the stored calibration scores), and why the guarantee may not hold."""
    usable = [name for name, s in stackers.items() if all(i in scores for i in s.inputs)]
    if not usable:
        raise InputError(None, f"no stacker of the fusion bundle can use the inputs {', '.join(scores)}",
                         "Give the case the inputs the bundle needs (its model.json lists them)")
    name = max(usable, key=lambda n: len(stackers[n].inputs))
    stacker = stackers[name]
    probability = stacker.probability(scores)
    conformal = conformal_at(stacker, coverage)
    members = conformal.predict_sets(np.array([probability]))[0]
    cautions = list(quality_warnings)
    outside = stacker.outside_training_range(scores)
    if outside:
        cautions.append(f"{', '.join(outside)} outside the range of the training patients")
    validation = dict(record.get("validation", {}).get(name, {}))
    # a bundle validated on simulated patients guarantees nothing measured for a real scan: say so
    simulated = (" (its training patients were simulated: on a real scan the coverage is unverified)"
                 if "simulated" in str(validation.get("labels", "")) else "")
    return {"idh_mutant_probability": probability, "predicted_class": "mutant" if probability >= 0.5 else "wildtype",
            "prediction_set": set_label(members), "coverage": conformal.coverage, "stacker": name,
            "inputs_used": list(stacker.inputs), "component_scores": {k: scores[k] for k in stacker.inputs},
            "validation": validation,
            "deployment_validation": dict(record.get("deployment_validation", {}).get(name, {})),
            "guarantee": ("holds for patients like the training cohort" if not cautions else
                          "may not hold: " + "; ".join(cautions)) + simulated,
            "note": record.get("note", "")}


def conformal_at(stacker: Stacker, coverage: float | None) -> ClassConditionalConformal:
    """The stacker's prediction sets at ``coverage`` (None: the bundle's own)."""
    if coverage is None or coverage == stacker.conformal.coverage:
        return stacker.conformal
    try:
        return stacker.conformal.at_coverage(coverage)
    except ValueError as error:
        raise InputError(None, f"coverage {coverage}: {error}",
                         "Give a coverage strictly between 0 and 1 (e.g. 0.8), or re-create the bundle with "
                         "idh-predictor fusion --save-model, which stores the calibration scores") from error


def fuse(dlr_result: dict, perfusion_result: dict | None, age: float, bundle: str | Path = DEFAULT_FUSION_MODEL,
         cautions: list[str] | None = None, coverage: float | None = None) -> dict[str, object]:
    """The fused answer from the results of the bundle's own DLR (and perfusion) components and
    the age; ``cautions`` (e.g. quality warnings) say why the guarantee may not hold."""
    stackers, record = load_fusion_model(bundle)
    return fused_answer(stackers, record, component_scores(dlr_result, perfusion_result, age), list(cautions or []), coverage)


def quality_cautions(quality: QualityReport) -> list[str]:
    """Quality-control warnings as reasons the coverage guarantee may not hold."""
    return [f"quality: {c.name.replace('_', ' ')}: {c.message}" for c in quality.problems()]


def fusion_cautions(quality: QualityReport, perfusion_result: dict | None) -> list[str]:
    """The case's quality warnings and, when perfusion was used, its DSC series' verdicts."""
    cautions = quality_cautions(quality)
    if perfusion_result is not None:
        cautions += quality_cautions(QualityReport.from_dict(dict(perfusion_result.get("dsc_quality") or {})))
    return cautions


def describe_fusion(answer: dict[str, object]) -> str:
    """One display line for a fused answer (the Slicer panel): probability, class, prediction set
    with its coverage, the inputs used, the bundle's validation and whether the guarantee holds."""
    from ..validation.report import metric_cell

    validation = dict(answer.get("validation") or {})
    line = (f"IDH-mutant probability {answer['idh_mutant_probability']:.2f} (calibrated; {answer['predicted_class']}); "
            f"prediction set at {answer['coverage']:.0%}: {answer['prediction_set']}; from {' + '.join(answer['inputs_used'])}")
    if validation.get("auc"):
        line += (f". Validation ({validation['validation']}, {validation['patients']} {validation['labels']} patients, "
                 f"{validation['masks']} masks): AUC {metric_cell(validation['auc'])}, Brier {validation['brier']:.3f}, "
                 f"ECE {validation['ece']:.3f}")
    on_cnn = dict(answer.get("deployment_validation") or {}).get("CNN")
    if on_cnn:
        coverage = on_cnn.get("coverage") or {}
        line += (f"; on {on_cnn['masks']} masks, {on_cnn['patients']} held-out {on_cnn['labels']} patients: "
                 f"AUC {metric_cell(on_cnn['auc'])}, ECE {on_cnn['ece']:.3f}"
                 + (f", coverage mutant {coverage['mutant']:.2f}, wildtype {coverage['wildtype']:.2f}" if coverage else ""))
    return line + f". The coverage guarantee {answer['guarantee']}."


def component_scores(dlr_result: dict, perfusion_result: dict | None, age: float) -> dict[str, float]:
    """The stackers' inputs from the component predictions (the same scores the fusion was trained
    on: the SVM decision, the logit of the LSTM's output, minus the age)."""
    scores = {"DLR": float(dlr_result["decision_value"])}
    if perfusion_result is not None:
        scores["perfusion LSTM"] = float(logit(np.array([perfusion_result["network_output"]]))[0])
    scores["age"] = -float(age)
    return scores


def predict_fusion(case_dir: str | Path, age: float, bundle: str | Path = DEFAULT_FUSION_MODEL,
                   preprocess: str = "auto", progress: Callable[[int, int], None] | None = None,
                   labels_out: Path | None = None, coverage: float | None = None) -> dict[str, object]:
    """One case's fused answer with the bundle's own components: DLR always; perfusion when the
    case has a DSC series; age (years) always, as every stacker uses it. Both components work
    inside the case's ``_seg`` when it has one, else inside the CNN's mask, as the deployment-mode
    validation did. ``coverage``: prediction sets at another coverage than the bundle's. Returns the
    fused answer and both component results."""
    import tempfile

    from ..dlr.predict import predict_dlr
    from ..io.case import find_case_files, read_label_map
    from ..perfusion.model_bundle import predict_perfusion

    stackers, record = load_fusion_model(bundle)  # a bad bundle, or a coverage it cannot give, is refused before any work
    for stacker in stackers.values():
        conformal_at(stacker, coverage)
    if not 0 < age < 120:
        raise InputError(None, f"age {age} is not a plausible age in years", "Give the patient's age in years, e.g. --age 54")
    _, files = find_case_files(case_dir)
    with tempfile.TemporaryDirectory(prefix="idhpredictor-") as scratch:
        # without a _seg the DLR step segments; the DSC analysis then needs that same mask
        cnn_labels = labels_out or (Path(scratch) / "cnn_seg.nii.gz" if "dsc" in files and "seg" not in files else None)
        dlr = predict_dlr(case_dir, Path(bundle) / DLR_PART, progress=progress, preprocess=preprocess, labels_out=cnn_labels)
        perfusion = None
        if "dsc" in files:
            mask = read_label_map(Path(cnn_labels)) if "seg" not in files else None
            perfusion = predict_perfusion(case_dir, Path(bundle) / PERFUSION_PART, labels=mask)
    answer = fused_answer(stackers, record, component_scores(dlr, perfusion, age),
                          fusion_cautions(QualityReport.from_dict(dlr["quality"]), perfusion), coverage)
    answer["mask"] = dlr["mask"]
    return {"fusion": answer, "dlr": dlr, "perfusion": perfusion}
