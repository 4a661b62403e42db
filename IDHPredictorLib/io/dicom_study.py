"""A DICOM study folder as it leaves the scanner: find its series, recognise T1, T1c, T2, FLAIR and
the DSC run from their headers, and present them to the rest of the library as a case folder.

Series are grouped by SeriesInstanceUID (pydicom reads headers only). Each is recognised from
what the scanner records rather than from its free-text name alone: a localiser by ImageType,
DSC by its many temporal positions on an echo-planar sequence, FLAIR by a long inversion time,
T2 by long TR and TE, T1 by short TR and TE, with T1c told from T1 by the contrast agent
attribute (or "+C", "gd", "post" in the description). ``--series role=UID-or-number`` overrides
any of it. When two series claim a role, or FLAIR is missing, one error lists every series with
what was read from it. The case folder made from a study holds one folder of links per role,
which the ordinary readers take as DICOM series folders.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

ROLES = ("t1", "t1ce", "t2", "flair", "dsc")
MAX_FILES = 100_000  # a study is scanned header by header; refuse a folder that is clearly not one
CONTRAST_WORDS = re.compile(r"(\+\s*c\b|\bgd\b|gad|post|contrast|\bce\b|t1c)", re.IGNORECASE)
LOCALISER_WORDS = re.compile(r"(locali[sz]er|scout|survey|\bloc\b|3-?plane)", re.IGNORECASE)
DIFFUSION_WORDS = re.compile(r"(dwi|diffusion|\badc\b|trace|\bdti\b|b-?1000)", re.IGNORECASE)


@dataclass(frozen=True)
class SeriesInfo:
    """What the headers of one series say (times in ms; ``contrast``: a contrast agent is recorded)."""

    uid: str
    number: int | None
    description: str
    files: tuple[Path, ...]
    image_type: str
    scanning_sequence: str
    tr_ms: float | None
    te_ms: float | None
    ti_ms: float | None
    contrast: bool
    temporal_positions: int
    patient_id: str

    def line(self) -> str:
        """One row of the study listing."""
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:g}"
        return (f"#{self.number if self.number is not None else '?'} '{self.description}' ({len(self.files)} files; "
                f"TR {ms(self.tr_ms)} TE {ms(self.te_ms)} TI {ms(self.ti_ms)} ms; {self.scanning_sequence or 'sequence ?'}; "
                f"{'contrast' if self.contrast else 'no contrast'}; {self.temporal_positions} time points; uid {self.uid})")


def _number(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def is_dicom_file(path: Path) -> bool:
    """A Part-10 file (the "DICM" marker after the 128-byte preamble)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_study(folder: str | Path) -> bool:
    """True for a folder (tree) of DICOM files that is not a BraTS-layout case: DICOM files or
    folders beside (or instead of) the ``<id>_<role>`` entries a case holds."""
    from .case import find_case_files

    folder = Path(folder)
    if not folder.is_dir():
        return False
    try:
        role_entries = set(find_case_files(folder)[1].values())
    except InputError:
        role_entries = set()
    others = [entry for entry in folder.iterdir() if entry not in role_entries and not entry.name.startswith(".")]
    return any(is_dicom_file(path) for entry in others for path in ([entry] if entry.is_file() else _files(entry, limit=20)))


def _files(folder: Path, limit: int = MAX_FILES) -> list[Path]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and name != "DICOMDIR":
                found.append(Path(root) / name)
                if len(found) > limit:
                    return found
    return found


def scan_study(folder: str | Path) -> list[SeriesInfo]:
    """Every image series in the study folder tree, by series number. A DICOM file that does not
    parse, or an image series without geometry, is refused by name."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    files = [path for path in _files(folder) if is_dicom_file(path)]
    if len(files) > MAX_FILES:
        raise InputError(folder, f"holds more than {MAX_FILES} files", "Point to one patient's study folder")
    if not files:
        raise InputError(folder, "holds no DICOM files", "Point to the study folder exported from the scanner or PACS")
    groups: dict[str, list[tuple[Path, object]]] = {}
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as error:
            raise InputError(path, f"is a corrupt DICOM file ({type(error).__name__}: {error})",
                             "Re-export the series, or remove the file from the study folder") from error
        sop_class = str(header.get("SOPClassUID", ""))
        if not sop_class:
            raise InputError(path, "is a corrupt DICOM file (no SOP class: not a complete DICOM object)",
                             "Re-export the series, or remove the file from the study folder")
        if "Rows" not in header:
            if "Image Storage" in pydicom.uid.UID(sop_class).name:
                raise InputError(path, "is a corrupt DICOM file (an image without its image attributes: truncated?)",
                                 "Re-export the series, or remove the file from the study folder")
            continue  # not an image: structured reports, presentation states, ...
        uid = str(header.get("SeriesInstanceUID", ""))
        if not uid:
            raise InputError(path, "has no SeriesInstanceUID", "Re-export the study from the scanner or PACS")
        groups.setdefault(uid, []).append((path, header))
    series = [_series_info(uid, members) for uid, members in groups.items()]
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.uid))


def _series_info(uid: str, members: list[tuple[Path, object]]) -> SeriesInfo:
    first = members[0][1]
    for path, header in members:
        if "ImagePositionPatient" not in header or "ImageOrientationPatient" not in header or "PixelSpacing" not in header:
            raise InputError(path, "has no image geometry (ImagePositionPatient, ImageOrientationPatient, PixelSpacing)",
                             "Re-export the series with its geometry tags; secondary captures cannot be used")
    positions = {int(h.get("TemporalPositionIdentifier", 0) or 0) for _, h in members}
    declared = int(_number(first.get("NumberOfTemporalPositions")) or 0)
    def text(value: object) -> str:  # a multi-valued attribute (ImageType, ScanningSequence) as one string
        return value if isinstance(value, str) else "\\".join(str(v) for v in value or [])

    agent = str(first.get("ContrastBolusAgent", "") or "").strip()
    description = str(first.get("SeriesDescription", "") or first.get("ProtocolName", "") or "")
    return SeriesInfo(uid=uid, number=int(first.SeriesNumber) if first.get("SeriesNumber") not in (None, "") else None,
                      description=description, files=tuple(sorted(path for path, _ in members)),
                      image_type=text(first.get("ImageType")), scanning_sequence=text(first.get("ScanningSequence")),
                      tr_ms=_number(first.get("RepetitionTime")), te_ms=_number(first.get("EchoTime")),
                      ti_ms=_number(first.get("InversionTime")), contrast=bool(agent) or bool(CONTRAST_WORDS.search(description)),
                      temporal_positions=max(len(positions - {0}), declared), patient_id=str(first.get("PatientID", "") or ""))


def recognise(series: SeriesInfo) -> tuple[str | None, str]:
    """The role the headers give a series (or None) and why."""
    tr, te, ti = series.tr_ms, series.te_ms, series.ti_ms
    if "LOCALIZER" in series.image_type.upper() or LOCALISER_WORDS.search(series.description):
        return None, "localiser"
    if "DIFFUSION" in series.image_type.upper() or DIFFUSION_WORDS.search(series.description):
        return None, "diffusion"
    if series.temporal_positions >= 10:
        if "EP" in series.scanning_sequence or "perf" in series.description.lower() or "dsc" in series.description.lower():
            return "dsc", f"{series.temporal_positions} time points, echo-planar"
        return None, f"{series.temporal_positions} time points but not echo-planar (not DSC)"
    if ti is not None and ti > 1500 and (te or 0) > 60:
        return "flair", f"inversion recovery, TI {ti:g} ms"
    if tr is None or te is None:
        return None, "no TR/TE in the headers"
    if ti is not None and 500 <= ti <= 1300 and te < 10:  # MPRAGE-like: TR ~2 s, so the short-TR rule misses it
        kind = "T1-weighted inversion-prepared gradient echo"
        return ("t1ce", f"{kind} with contrast") if series.contrast else ("t1", f"{kind}, no contrast")
    if tr > 2000 and te > 60:
        return "t2", "long TR and TE"
    if tr < 1200 and te < 30:
        return ("t1ce", "T1-weighted with contrast") if series.contrast else ("t1", "T1-weighted, no contrast")
    return None, "TR/TE fit no structural role (diffusion, SWI, ...)"


def assign_roles(series: list[SeriesInfo], overrides: Mapping[str, str] | None = None,
                 folder: Path | None = None) -> dict[str, SeriesInfo]:
    """Role -> series for the study; ``overrides`` maps a role to a SeriesInstanceUID or series
    number. Refuses (listing every series) when a role is claimed twice or FLAIR is missing."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(ROLES)
    if unknown:
        raise InputError(folder, f"--series names unknown roles {sorted(unknown)}", f"Use {', '.join(ROLES)}")
    assigned: dict[str, SeriesInfo] = {}
    for role, key in overrides.items():
        match = [s for s in series if s.uid == key or str(s.number) == str(key)]
        if len(match) != 1:
            raise InputError(folder, f"--series {role}={key} matches {len(match)} series\n{listing(series)}",
                             "Give a SeriesInstanceUID or series number from the listing")
        assigned[role] = match[0]
    taken = {s.uid for s in assigned.values()}
    candidates: dict[str, list[SeriesInfo]] = {}
    for info in series:
        role, _ = recognise(info)
        if role is not None and role not in assigned and info.uid not in taken:
            candidates.setdefault(role, []).append(info)
    ambiguous = {role: found for role, found in candidates.items() if len(found) > 1}
    if ambiguous:
        claims = "; ".join(f"{role}: series {', '.join(str(s.number) for s in found)}" for role, found in ambiguous.items())
        raise InputError(folder, f"more than one series could be the {claims}\n{listing(series)}",
                         "Choose with --series ROLE=NUMBER (e.g. --series flair=7)")
    assigned.update({role: found[0] for role, found in candidates.items()})
    if "flair" not in assigned:
        raise InputError(folder, f"no FLAIR series recognised\n{listing(series)}",
                         "Choose it with --series flair=NUMBER, or export the FLAIR series with the study")
    return assigned


def listing(series: list[SeriesInfo], assigned: Mapping[str, SeriesInfo] | None = None) -> str:
    """The series found, what was read from each and the role given (or why none)."""
    by_uid = {s.uid: role for role, s in (assigned or {}).items()}
    lines = []
    for info in series:
        role, why = recognise(info)
        verdict = f"-> {by_uid[info.uid]}" if info.uid in by_uid else f"({why})" if role is None else f"(could be {role}: {why})"
        lines.append(f"  {info.line()} {verdict}")
    return "\n".join(lines)


def case_folder_from_study(study: str | Path, out: str | Path, overrides: Mapping[str, str] | None = None
                           ) -> tuple[Path, dict[str, SeriesInfo], list[SeriesInfo]]:
    """A BraTS-layout case folder under ``out`` whose role folders link to the study's series
    files (copies where links are not allowed); returns it, the assignment and every series."""
    study = Path(study)
    series = scan_study(study)
    assigned = assign_roles(series, overrides, study)
    patient = re.sub(r"[^A-Za-z0-9.-]+", "-", assigned["flair"].patient_id).strip("-") or study.name
    case = Path(out) / patient
    for role, info in assigned.items():
        target = case / f"{patient}_{role}"
        target.mkdir(parents=True, exist_ok=True)
        for index, path in enumerate(info.files):
            link = target / f"{index:05d}.dcm"
            try:
                link.symlink_to(path.resolve())
            except OSError:  # e.g. Windows without the privilege: copy instead
                shutil.copyfile(path, link)
    return case, assigned, series


@dataclass
class StudyCase:
    """A case folder to read, and, when it was made from a DICOM study, the study's series and
    the role given to each."""

    folder: Path
    assigned: dict[str, SeriesInfo] | None = None
    series: list[SeriesInfo] | None = None


@contextlib.contextmanager
def as_case_folder(path: str | Path, overrides: Mapping[str, str] | None = None) -> Iterator[StudyCase]:
    """``path`` itself for a case folder; for a DICOM study, a temporary case folder of links to
    its recognised series, removed when the block ends (read what you need inside it)."""
    if not is_dicom_study(path):
        if overrides:
            raise InputError(path, "is not a DICOM study folder, so series cannot be chosen for it", "Drop --series")
        yield StudyCase(Path(path))
        return
    with tempfile.TemporaryDirectory(prefix="idh-predictor-study-") as scratch:
        yield StudyCase(*case_folder_from_study(path, scratch, overrides))
