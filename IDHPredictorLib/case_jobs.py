"""Case jobs: one slow workflow step on one case, run in a child process, observed by a front end.

A ``CaseJob`` captures its case (the ``SceneCase`` and its nodes) when it starts, so its result
lands on that case whatever the user selects meanwhile. It reports progress, cancels the whole
process tree, keeps the child's output (``job.log`` in its folder, shown on failure) and finishes
into a typed result (``SegmentationResult``, ``DlrResult``; the in-process steps give
``PerfusionResult`` and ``FusionResult``) that both the Slicer module and the web app display.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from . import scene_workflow as workflow
from .background import BackgroundJob, JobProgress
from .catalog import resolve_model
from .preprocessing.prepare import PreprocessMode


@dataclass(frozen=True)
class CaseResult:
    """What a step gave for one case: ``record`` is the library's own output for it."""

    kind: ClassVar[str] = ""
    case_id: str
    record: Mapping[str, object]

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "case_id": self.case_id, **self.record}


@dataclass(frozen=True)
class SegmentationResult(CaseResult):
    """The CNN's mask is in the case's segmentation node; ``record`` is the quality verdict."""

    kind: ClassVar[str] = "segmentation"

    @property
    def verdict(self) -> str:
        return str(self.record["verdict"])


@dataclass(frozen=True)
class _ProbabilityResult(CaseResult):
    """A step whose answer is a calibrated IDH-mutant probability."""

    @property
    def probability(self) -> float:
        return float(self.record["idh_mutant_probability"])


@dataclass(frozen=True)
class DlrResult(_ProbabilityResult):
    kind: ClassVar[str] = "dlr"


@dataclass(frozen=True)
class PerfusionResult(_ProbabilityResult):
    kind: ClassVar[str] = "perfusion"


@dataclass(frozen=True)
class FusionResult(_ProbabilityResult):
    kind: ClassVar[str] = "fusion"

    @property
    def prediction_set(self) -> str:
        return str(self.record["prediction_set"])


class CaseJob:
    """One step running for one case in a child ``idh-predictor`` process."""

    def __init__(self, kind: str, scene_case: workflow.SceneCase, arguments: list[str], workdir: Path,
                 finish: Callable[[CaseJob, object], CaseResult], python: str | None = None) -> None:
        self.kind = kind
        self.case = scene_case
        self._finish = finish
        self.background = BackgroundJob(arguments, python=python, workdir=workdir)

    @property
    def workdir(self) -> Path:
        """The job's scratch folder: its inputs, outputs and log."""
        return self.background.workdir

    @property
    def progress(self) -> JobProgress | None:
        return self.background.progress

    @property
    def running(self) -> bool:
        return self.background.running

    @property
    def cancelled(self) -> bool:
        return self.background.cancelled

    @property
    def log(self) -> str:
        """The child's output so far (its last lines)."""
        return self.background.output

    def cancel(self) -> None:
        self.background.cancel()

    def finish(self, scene: object) -> CaseResult:
        """After the child ended: apply its output to the job's own case and return the result.
        Raises ``JobCancelled`` or ``JobFailed`` (with the child's output); the job's folder is
        removed either way."""
        try:
            self.background.check()
            return self._finish(self, scene)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the job's scratch folder (inputs, outputs, log)."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def _job_folder(scene_case: workflow.SceneCase, with_labels: bool) -> Path:
    return workflow.write_case_folder(scene_case, tempfile.mkdtemp(prefix="IDHPredictorJob-"), with_labels=with_labels)


def start_segmentation(scene_case: workflow.SceneCase, model: str | Path | None = None,
                       preprocess: PreprocessMode = "auto", python: str | None = None) -> CaseJob:
    """Segment the case with the CNN (``model``: a catalogue id, a bundle folder, or None for the
    default for its modalities); finishing replaces the case's segmentation node."""
    bundle = resolve_model("segmentation", model, scene_case.volumes)
    folder = _job_folder(scene_case, with_labels=False)
    arguments = ["segment", str(folder), "--out", str(folder / "labels.nii.gz"), "--preprocess", preprocess,
                 "--model", str(bundle)]
    return CaseJob("segmentation", scene_case, arguments, folder, _finish_segmentation, python)


def _finish_segmentation(job: CaseJob, scene: object) -> SegmentationResult:
    from .io.case import read_label_map
    from .quality import QualityReport

    report = json.loads((job.workdir / "labels.report.json").read_text(encoding="utf-8"))
    workflow.record_quality(job.case, report["preparation"], QualityReport.from_dict(report["quality"]))
    workflow.set_labels(scene, job.case, read_label_map(job.workdir / "labels.nii.gz"))
    return SegmentationResult(job.case.case_id, dict(job.case.results["quality"]))


def start_dlr(scene_case: workflow.SceneCase, model: str | Path | None = None, preprocess: PreprocessMode = "auto",
              python: str | None = None) -> CaseJob:
    """DLR prediction from the case's current (corrected) segmentation."""
    workflow.require_segmentation(scene_case)
    bundle = resolve_model("dlr", model, scene_case.volumes)
    folder = _job_folder(scene_case, with_labels=True)
    arguments = ["predict", str(folder), "--out", str(folder / "result.json"), "--preprocess", preprocess,
                 "--dlr-model", str(bundle)]
    return CaseJob("dlr", scene_case, arguments, folder, _finish_dlr, python)


def _finish_dlr(job: CaseJob, scene: object) -> DlrResult:
    result = json.loads((job.workdir / "result.json").read_text(encoding="utf-8"))["dlr"]
    result["mask"] = f"segmentation node {job.case.segmentation.GetName()}"
    job.case.results["dlr"] = result
    workflow.save_results(job.case)
    return DlrResult(job.case.case_id, result)


def compute_perfusion(scene: object, scene_case: workflow.SceneCase, model: str | Path | None = None,
                      **options: object) -> PerfusionResult:
    """``scene_workflow.compute_perfusion`` (seconds of numpy work, run in-process) as a typed result."""
    prediction = workflow.compute_perfusion(scene, scene_case, resolve_model("perfusion", model), **options)
    return PerfusionResult(scene_case.case_id, prediction.result)


def compute_fusion(scene: object, scene_case: workflow.SceneCase, age: float, model: str | Path | None = None,
                   preprocess: PreprocessMode = "auto") -> FusionResult:
    """``scene_workflow.compute_fusion`` as a typed result."""
    answer = workflow.compute_fusion(scene, scene_case, age, resolve_model("fusion", model), preprocess)
    return FusionResult(scene_case.case_id, answer)
