"""Model bundles: a folder with ``model.json`` (what, inputs, preprocessing, training data,
metrics, library version) beside its weight files. Written all-or-nothing; read with checks."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .errors import InputError
from .io.atomic import atomic_directory

BUNDLE_FORMAT = 1
log = logging.getLogger(__name__)


def write_bundle(folder: str | Path, kind: str, metadata: dict, files: dict[str, Callable[[Path], None]]) -> Path:
    """Write ``model.json`` and each weight file (``files[name](path)`` writes it) into ``folder``."""
    folder = Path(folder)
    with atomic_directory(folder) as tmp:
        for name, writer in files.items():
            writer(tmp / name)
        record = {"bundle_format": BUNDLE_FORMAT, "kind": kind, "library_version": __version__,
                  "files": sorted(files), "sha256": {name: file_sha256(tmp / name) for name in sorted(files)},
                  "provenance": provenance(), **metadata}
        (tmp / "model.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return folder


# The command line being run, set by ``cli.main`` (None when the library is called from Python).
COMMAND_LINE: list[str] | None = None


# The code version when the running command started (set by ``cli.main``): a long training run
# must record the code it ran with, not what the checkout holds when it ends.
CODE_AT_START: dict[str, object] | None = None


def code_version() -> dict[str, object]:
    """Library version and git commit of the source tree when it is a checkout (with "+changes"
    when it has uncommitted edits)."""
    return {"library_version": __version__, "git_commit": _git_commit(Path(__file__).resolve().parents[1])}


def provenance() -> dict[str, object]:
    """How a bundle was made, recorded by the code that made it (never edited by hand): the
    command line, the code version (at the command's start when run from the CLI) and the time."""
    import datetime as dt

    return {"command": " ".join(COMMAND_LINE) if COMMAND_LINE else "Python API", **(CODE_AT_START or code_version()),
            "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")}


def _git_commit(source: Path) -> str | None:
    """HEAD of the checkout holding ``source`` (+"+changes" for uncommitted edits); None without
    git or outside a checkout (e.g. inside Slicer), where the library version identifies the code."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "") if head.returncode == 0 else None


def read_bundle(folder: str | Path, kind: str) -> dict:
    """``model.json`` of a bundle after checking format, kind and that every file is there."""
    folder = Path(folder)
    path = folder / "model.json"
    if not path.exists():
        raise InputError(folder, "is not a model bundle (no model.json)",
                         "Point to a bundle folder, e.g. one under Resources/models/")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(path, f"is corrupt ({error.msg})", "Re-install or re-train the bundle") from error
    if record.get("bundle_format") != BUNDLE_FORMAT:
        raise InputError(path, f"bundle format {record.get('bundle_format')!r}, this library reads {BUNDLE_FORMAT}",
                         f"Use a bundle made by IDHPredictor {__version__}, or re-train it")
    if record.get("kind") != kind:
        raise InputError(path, f"is a {record.get('kind')!r} bundle, expected {kind!r}", "Choose the right bundle")
    missing = [name for name in record.get("files", []) if not (folder / name).exists()]
    if missing:
        raise InputError(folder, f"bundle is missing {', '.join(missing)}", "Re-install or re-train the bundle")
    checksums = record.get("sha256")
    if not checksums:
        log.warning("%s records no checksums: its weights cannot be verified (re-train or re-save it)", path)
    for name, expected in (checksums or {}).items():
        if file_sha256(folder / name) != expected:
            raise InputError(folder / name, "does not match the checksum in model.json (changed or damaged)",
                             "Re-install or re-train the bundle")
    return record


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def update_bundle_metrics(folder: str | Path, name: str, metrics: dict) -> None:
    """Add or replace ``metrics[name]`` in a bundle's model.json (rewritten all-or-nothing)."""
    update_bundle_record(folder, lambda record: record.setdefault("metrics", {}).__setitem__(name, metrics))


def update_bundle_record(folder: str | Path, change: Callable[[dict], None]) -> None:
    """Apply ``change`` to a bundle's model.json record in place and rewrite it all-or-nothing."""
    from .io.atomic import atomic_path

    path = Path(folder) / "model.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    change(record)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
