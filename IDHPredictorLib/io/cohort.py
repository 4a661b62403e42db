"""Read a cohort: case folders plus ``clinical.csv``, validated and joined by case id."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .case import find_case_files

REQUIRED_COLUMNS = ("case_id", "idh", "age", "sex", "grade", "diagnosis_date")
IDH_VALUES = {"mutant": True, "wildtype": False}


@dataclass(frozen=True)
class CohortCase:
    """A case folder joined to its clinical row (all columns kept, typed where known)."""

    case_id: str
    folder: Path
    idh_mutant: bool
    age: float
    diagnosis_date: dt.date
    clinical: dict[str, str]


def read_clinical(path: str | Path) -> dict[str, dict[str, str]]:
    """Rows of ``clinical.csv`` by case id, after checking columns, ids, IDH values, ages and dates."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "clinical.csv not found",
                         f"Add a CSV with columns {', '.join(REQUIRED_COLUMNS)} beside the case folders")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(path, f"is not UTF-8 text (byte {error.start}: {error.reason})",
                         "Save the CSV as UTF-8 (spreadsheet programs: 'CSV UTF-8')") from error
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(path, f"missing column(s) {', '.join(missing)}",
                             f"The header must include {', '.join(REQUIRED_COLUMNS)} (extra columns are kept)")
        rows: dict[str, dict[str, str]] = {}
        for line, row in enumerate(reader, start=2):
            case_id = (row["case_id"] or "").strip()
            if not case_id:
                raise InputError(path, f"line {line}: empty case_id", "Fill in the case id or delete the line")
            if case_id in rows:
                raise InputError(path, f"line {line}: duplicate case_id {case_id!r}", "Give each patient one row")
            _check_row(path, line, row)
            rows[case_id] = {k: (v or "").strip() for k, v in row.items()}
    if not rows:
        raise InputError(path, "has a header but no patients", "Add one row per case")
    return rows


def _check_row(path: Path, line: int, row: dict[str, str]) -> None:
    idh = (row["idh"] or "").strip().lower()
    if idh not in IDH_VALUES:
        raise InputError(path, f"line {line}: unknown IDH value {row['idh']!r}",
                         "Use 'mutant' or 'wildtype' (leave unknown-status patients out of the cohort)")
    try:
        age = float(row["age"])
    except (TypeError, ValueError):
        raise InputError(path, f"line {line}: age {row['age']!r} is not a number", "Give age in years") from None
    if not 0 <= age <= 120:  # also refuses nan and inf
        raise InputError(path, f"line {line}: age {row['age']!r} is not a plausible age", "Give age in years, 0-120")
    try:
        dt.date.fromisoformat((row["diagnosis_date"] or "").strip())
    except ValueError:
        raise InputError(path, f"line {line}: diagnosis_date {row['diagnosis_date']!r} is not a date",
                         "Use ISO dates, YYYY-MM-DD") from None


PHANTOM_RECORD = "phantom.json"  # written by the phantom beside clinical.csv


def cohort_record(cohort_dir: str | Path) -> dict[str, object]:
    """What a bundle records of its training cohort: the folder and, for a simulated cohort, the
    phantom's own record of its options and code version (so nothing is described by hand)."""
    record: dict[str, object] = {"folder": str(cohort_dir)}
    phantom = Path(cohort_dir) / PHANTOM_RECORD
    if phantom.is_file():
        try:
            record["phantom"] = json.loads(phantom.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(phantom, f"is not valid JSON ({error})", "Regenerate the cohort, or delete the file") from None
    return record


def case_folders(cohort_dir: str | Path) -> list[Path]:
    """The case folders of a cohort (sorted; hidden folders skipped). No clinical data needed."""
    cohort_dir = Path(cohort_dir)
    if not cohort_dir.is_dir():
        raise InputError(cohort_dir, "cohort folder not found", "Give the folder that holds the case folders")
    return sorted(p for p in cohort_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def brats_case_folders(root: str | Path) -> list[Path]:
    """Folders directly under ``root`` that hold a four-modality BraTS-layout case with labels
    (other folders, such as nested collections or raw scans, are left out)."""
    from .case import MODALITIES, find_case_files

    found = []
    for folder in case_folders(root):
        try:
            _, files = find_case_files(folder)
        except InputError:
            continue
        if set(MODALITIES) | {"seg"} <= set(files):
            found.append(folder)
    return found


def read_cohort(cohort_dir: str | Path) -> list[CohortCase]:
    """Join every case folder of ``cohort_dir`` to its clinical row; mismatches are errors."""
    cohort_dir = Path(cohort_dir)
    entries = case_folders(cohort_dir)
    rows = read_clinical(cohort_dir / "clinical.csv")
    folders = {}
    for entry in entries:
        case_id, _ = find_case_files(entry)
        if case_id in folders:
            raise InputError(entry, f"case id {case_id!r} also used by {folders[case_id].name}", "Give each case one folder")
        folders[case_id] = entry
    no_row = sorted(set(folders) - set(rows))
    if no_row:
        raise InputError(cohort_dir / "clinical.csv", f"no row for case(s) {', '.join(no_row[:5])}",
                         "Add their clinical rows, or move those folders out of the cohort")
    no_folder = sorted(set(rows) - set(folders))
    if no_folder:
        raise InputError(cohort_dir, f"no folder for case(s) {', '.join(no_folder[:5])} listed in clinical.csv",
                         "Add the case folders, or delete their rows")
    return [CohortCase(cid, folders[cid], IDH_VALUES[rows[cid]["idh"].lower()], float(rows[cid]["age"]),
                       dt.date.fromisoformat(rows[cid]["diagnosis_date"]), rows[cid]) for cid in sorted(rows)]
