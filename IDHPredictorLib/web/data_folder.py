"""The one folder the web app serves: its cases, and uploads into it, never anything outside.

A browser is a remote client even on 127.0.0.1, so every name it sends is resolved inside the
folder the server was started on (no ``..``, no absolute path, no symbolic link out), and an
upload is checked for size and type before a byte is written, then written whole or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import InputError
from ..io.atomic import atomic_directory
from ..io.case import find_case_files, role_of

UPLOAD_SUFFIXES = (".nii.gz", ".nii")
MAX_UPLOAD_BYTES = 256 * 1024 * 1024  # one case, all series; a 1 mm 240x240x155 float32 volume is 36 MB
UPLOADS = "uploads"


class DataFolder:
    """The case folders under ``root`` (or ``root`` itself when it is one case)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InputError(root, "is not a folder", "Start the web app on a case folder or a cohort folder")

    def cases(self) -> list[str]:
        """Names of the case folders the app offers, relative to the root ("." for a one-case root)."""
        if _is_case(self.root):
            return ["."]
        found = [p for p in sorted(self.root.iterdir()) if p.is_dir() and not p.name.startswith(".") and _is_case(p)]
        uploads = self.root / UPLOADS
        if uploads.is_dir():
            found += [p for p in sorted(uploads.iterdir()) if p.is_dir() and _is_case(p)]
        return [p.relative_to(self.root).as_posix() for p in found]

    def resolve(self, name: str) -> Path:
        """The folder ``name`` names inside the root; anything that leads outside is refused."""
        if not name or Path(name).is_absolute() or "\\" in name:
            raise InputError(name, "is not a case of this data folder", "Pick a case from the list")
        path = (self.root / name).resolve()
        if path != self.root and self.root not in path.parents:
            raise InputError(name, "is outside the data folder the web app serves", "Pick a case from the list")
        if not path.is_dir():
            raise InputError(name, "is not a case folder of this data folder", "Pick a case from the list")
        return path

    def save_upload(self, files: Mapping[str, bytes]) -> str:
        """Write one case's uploaded files (name -> content) as ``uploads/<case id>``; returns its name."""
        if not files:
            raise InputError("upload", "holds no file", "Choose the case's NIfTI files (<id>_flair.nii.gz, ...)")
        total = sum(len(content) for content in files.values())
        if total > MAX_UPLOAD_BYTES:
            raise InputError("upload", f"is {total / 2**20:.0f} MB, over the {MAX_UPLOAD_BYTES / 2**20:.0f} MB limit",
                             "Upload one case at a time, compressed (.nii.gz)")
        for name, content in files.items():
            if Path(name).name != name or name.startswith("."):
                raise InputError(name, "is not a plain file name", "Upload the files themselves, not a path")
            if not name.lower().endswith(UPLOAD_SUFFIXES):
                raise InputError(name, "is not a NIfTI file", "Upload .nii.gz or .nii files named <id>_flair, <id>_t1ce, ...")
            if name.lower().endswith(".gz") and content[:2] != b"\x1f\x8b":
                raise InputError(name, "is named .gz but is not gzip-compressed", "Upload the file as the scanner tools wrote it")
        stems = {_case_id_of(name) for name in files}
        if None in stems or len(stems) != 1:
            raise InputError("upload", f"file names {sorted(files)} do not name one case",
                             "Name them <id>_t1, <id>_t1ce, <id>_t2, <id>_flair (optionally <id>_seg, <id>_dsc)")
        case_id = stems.pop()
        target = self.root / UPLOADS / case_id
        with atomic_directory(target) as tmp:
            for name, content in files.items():
                (tmp / name).write_bytes(content)
            find_case_files(tmp)  # refuses a folder that is not a case before it replaces anything
        return target.relative_to(self.root).as_posix()


def _is_case(folder: Path) -> bool:
    """A BraTS-layout case folder or a DICOM study folder."""
    from ..io.dicom_study import is_dicom_study

    try:
        find_case_files(folder)
    except InputError:
        return is_dicom_study(folder)
    return True


def _case_id_of(name: str) -> str | None:
    stem = next((name[: -len(s)] for s in UPLOAD_SUFFIXES if name.lower().endswith(s)), name)
    role = role_of(stem)
    return role[1] if role else None
