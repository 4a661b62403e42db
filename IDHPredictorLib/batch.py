"""``preprocess``, ``segment`` and ``predict`` with ``COHORT --out DIR``: the one-case command on
every case of a cohort, here or on a Dask cluster, resumable. (``preprocess`` makes ``DIR`` a
cohort itself: BraTS-layout case folders and the input's clinical.csv.)

Each case's outputs are written into ``DIR/<case>/`` all-or-nothing, ending with ``done.json``
(the inputs' fingerprint and the options), so a second run skips every case whose inputs and
options are unchanged, and a run stopped midway (or a worker lost) leaves no half-written case.
A failing case is named with its error in ``DIR/batch.json`` while the others complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .compute import TaskError, failures_of, map_cases
from .errors import InputError
from .io.atomic import atomic_directory, atomic_path
from .io.case import find_case_files
from .io.cohort import case_folders, read_clinical
from .io.images import holds_images

DONE = "done.json"
SUMMARY = "batch.json"


def is_cohort(path: str | Path) -> bool:
    """A folder of case folders (no images of its own, at least one subfolder with images)."""
    path = Path(path)
    if not path.is_dir() or holds_images(path):
        return False
    return any(holds_images(folder) for folder in case_folders(path))


def _models_used(command: str, case_dir: Path, options: dict) -> list[Path]:
    """The model bundles the command uses on this case (the shipped defaults resolved)."""
    from .segmentation.model_bundle import default_bundle_for, find_case_roles

    if command == "segment":
        return [Path(options["model"]) if options["model"] else default_bundle_for(find_case_roles(case_dir))]
    if command == "predict":
        from .dlr.predict import DEFAULT_DLR_MODEL

        named = [options[k] for k in ("fusion_model", "perfusion_model", "dlr_model") if options[k]]
        return [Path(p) for p in named] + ([] if options["fusion_model"] or options["dlr_model"] or options["skip_dlr"]
                                           else [DEFAULT_DLR_MODEL])
    return []


def _case_key(case_dir: Path, command: str, options: dict, age: float | None) -> str:
    """Fingerprint of what a case's outputs depend on: its input files, the options, the patient's
    age, the model bundles' files and the library version. Unchanged means done."""
    from . import __version__
    from .dlr.cache import files_fingerprint

    _, files = find_case_files(case_dir)
    models = [files_fingerprint(sorted(p for p in bundle.rglob("*") if p.is_file())) for bundle in
              _models_used(command, case_dir, options)]
    text = json.dumps({"command": command, "options": options, "age": age, "models": models, "version": __version__,
                       "inputs": files_fingerprint(list(files.values()))}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _segment_into(case_dir: Path, folder: Path, final: Path, options: dict, _age: float | None) -> dict[str, object]:
    from .case_commands import SegmentOptions, segment_case

    case_id, _ = find_case_files(case_dir)
    labels = f"{case_id}_seg.nii.gz"
    record, _ = segment_case(case_dir, folder / labels, folder / f"{case_id}_seg.report.json",
                             SegmentOptions(**options), labels_named=final / labels)
    return {"verdict": record["quality"]["verdict"]}


def _predict_into(case_dir: Path, folder: Path, final: Path, options: dict, age: float | None) -> dict[str, object]:
    from .case_commands import PredictOptions, predict_case

    case_id, _ = find_case_files(case_dir)
    predict = PredictOptions(**options)
    if predict.fusion_model and age is None:
        raise InputError(case_dir, "has no age in the cohort's clinical.csv, which the fused answer needs",
                         "Add the patient's age to clinical.csv")
    perfusion = predict.perfusion_model is not None
    result = predict_case(case_dir, predict, age, folder / f"{case_id}_cnn_seg.nii.gz",
                          folder / "attention.png" if perfusion else None, folder / "rcbv.nii.gz" if perfusion else None)
    text = json.dumps(result, indent=2).replace(json.dumps(str(folder))[1:-1], json.dumps(str(final))[1:-1])
    (folder / "prediction.json").write_text(text + "\n", encoding="utf-8")  # naming the files where they end up
    answer = result.get("fusion") or result.get("dlr") or result.get("perfusion") or {}
    return {key: answer.get(key) for key in ("idh_mutant_probability", "predicted_class")}


def _preprocess_into(case_dir: Path, folder: Path, _final: Path, options: dict, _age: float | None) -> dict[str, object]:
    from .preprocessing.prepare import prepare_case_folder, write_prepared
    from .segmentation.model_bundle import find_case_roles

    modalities = tuple(options["modalities"] or sorted(find_case_roles(case_dir)))
    prepared = prepare_case_folder(case_dir, modalities, options["mode"])
    write_prepared(prepared, folder)
    return {"input_kind": prepared.input_kind.value, "verdict": prepared.quality.verdict}


# (case folder, folder to write into, its final path, options, age) -> summary for done.json
TASKS: dict[str, Callable[[Path, Path, Path, dict, float | None], dict[str, object]]] = {
    "preprocess": _preprocess_into, "segment": _segment_into, "predict": _predict_into}


def _run_case(command: str, case_dir: Path, out: Path, options: dict, age: float | None, key: str) -> dict[str, object]:
    """One case into ``out`` (all-or-nothing; ``done.json`` last): a task of ``map_cases``."""
    with atomic_directory(out) as tmp:
        summary = TASKS[command](case_dir, tmp, out, options, age)
        (tmp / DONE).write_text(json.dumps({"key": key, "command": command, "case": str(case_dir), "options": options,
                                            "summary": summary}, indent=2) + "\n", encoding="utf-8")
    return summary


@dataclass
class BatchSummary:
    """What a batch run did: cases computed now, cases skipped as already done, failures."""

    out: Path
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[TaskError] = field(default_factory=list)
    not_cases: list[str] = field(default_factory=list)  # subfolders without images (e.g. nested collections)

    def as_dict(self) -> dict[str, object]:
        """For ``batch.json``: failures with their error and, for unexpected ones, the traceback."""
        return {**asdict(self), "out": str(self.out), "failures": [f.as_dict() for f in self.failures]}


def _done(out: Path, key: str) -> bool:
    try:
        return json.loads((out / DONE).read_text(encoding="utf-8"))["key"] == key
    except (OSError, ValueError, KeyError):
        return False


def _check_out_dir(cohort_dir: Path, out_dir: Path, folders: list[Path]) -> None:
    """Before any work: the output folder is neither the cohort nor inside one of its cases."""
    if out_dir == cohort_dir or any(out_dir == f or f in out_dir.parents for f in folders):
        raise InputError(out_dir, "is the cohort or one of its case folders, whose files the outputs would replace",
                         "Give a folder outside the cohort for --out")


def run_batch(command: str, cohort_dir: str | Path, out_dir: str | Path, options: dict, workers: int = 1,
              progress: Callable[[int, int], None] | None = None, ages_needed: bool = False) -> BatchSummary:
    """``command`` ("preprocess", "segment" or "predict") on every case of ``cohort_dir`` into ``out_dir/<case>``,
    skipping cases done with the same inputs and options. ``ages_needed``: the fused answer takes
    each patient's age from the cohort's clinical.csv."""
    cohort_dir, out_dir = Path(cohort_dir).resolve(), Path(out_dir).resolve()  # absolute: workers may run elsewhere
    folders = [f for f in case_folders(cohort_dir) if holds_images(f)]
    _check_out_dir(cohort_dir, out_dir, folders)
    summary = BatchSummary(out_dir, not_cases=[f.name for f in case_folders(cohort_dir) if f not in folders])
    ages: dict[str, float] = {}
    if ages_needed:
        ages = {case_id: float(row["age"]) for case_id, row in read_clinical(cohort_dir / "clinical.csv").items()}
    todo, owners = [], {}
    for folder in folders:
        try:  # a folder whose files cannot be read is that case's failure, not the batch's
            case_id, _ = find_case_files(folder)
            if case_id in owners:
                raise InputError(folder, f"holds case {case_id}, as {owners[case_id]} does", "Give every case its own id")
            owners[case_id] = folder
            key = _case_key(folder, command, options, ages.get(case_id))
        except InputError as error:
            summary.failures.append(TaskError(folder.name, str(error), ""))
            continue
        if _done(out_dir / case_id, key):
            summary.skipped.append(case_id)
        elif (out_dir / case_id).is_dir() and any((out_dir / case_id).iterdir()) and not (out_dir / case_id / DONE).exists():
            summary.failures.append(TaskError(case_id, str(InputError(
                out_dir / case_id, "holds files this command did not write, which writing the case would delete",
                "Move them, or give another --out folder")), ""))
        else:
            todo.append((case_id, (command, folder, out_dir / case_id, options, ages.get(case_id), key)))
    results = map_cases(_run_case, [args for _, args in todo], [case_id for case_id, _ in todo], workers, progress)
    summary.failures += failures_of(results)
    failed = {f.label for f in summary.failures}
    summary.computed = [case_id for case_id, _ in todo if case_id not in failed]
    if command == "preprocess" and (cohort_dir / "clinical.csv").exists():
        with atomic_path(out_dir / "clinical.csv") as tmp:
            shutil.copyfile(cohort_dir / "clinical.csv", tmp)
    with atomic_path(out_dir / SUMMARY) as tmp:
        tmp.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
    return summary
