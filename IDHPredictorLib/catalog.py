"""The model catalogue: which shipped bundles exist, what each needs, and which is the default.

``Resources/models/catalog.json`` (checked against ``catalog.schema.json``) is the one place the
defaults are named; the command line, the Slicer module and the web app all ask here, and the
two front ends offer its entries as a choice instead of a raw path field.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

MODELS_DIR = Path(__file__).resolve().parents[1] / "Resources" / "models"
CATALOG = MODELS_DIR / "catalog.json"
SCHEMA = MODELS_DIR / "catalog.schema.json"
KINDS = ("segmentation", "dlr", "perfusion", "fusion")
AUTOMATIC = "automatic"  # the model menus' first entry: the default for the case's modalities


@dataclass(frozen=True)
class CatalogEntry:
    """One shipped bundle: its folder name, kind, a title for the model menus, its inputs."""

    id: str
    kind: str
    title: str
    modalities: tuple[str, ...]
    default: bool

    @property
    def folder(self) -> Path:
        return MODELS_DIR / self.id


@functools.cache
def load_catalog(path: Path = CATALOG, validate: bool = True) -> tuple[CatalogEntry, ...]:
    """The catalogue's entries, in order; a catalogue that breaks the schema raises ``InputError``.
    ``validate=False`` is for the Slicer module's menus, built at import, before the first Apply
    has installed jsonschema; every model it resolves goes through the checked path."""
    if not path.is_file():
        raise InputError(path, "model catalogue not found (the bundles live in the source tree's Resources/models)",
                         "Install from a checkout (pip install -e .) or pass the model folder explicitly")
    record = json.loads(path.read_text(encoding="utf-8"))
    if validate:
        import jsonschema

        try:
            jsonschema.validate(record, json.loads(SCHEMA.read_text(encoding="utf-8")))
        except jsonschema.ValidationError as error:
            raise InputError(path, f"breaks {SCHEMA.name}: {error.message}", "Fix the entry or restore the shipped file") from error
    return tuple(CatalogEntry(**{**m, "modalities": tuple(m["modalities"])}) for m in record["models"])


def entries(kind: str, validate: bool = True) -> list[CatalogEntry]:
    """The catalogue's bundles of ``kind`` (for a model menu), defaults first in catalogue order."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; one of {', '.join(KINDS)}")
    found = [entry for entry in load_catalog(validate=validate) if entry.kind == kind]
    return sorted(found, key=lambda entry: not entry.default)


def default_model(kind: str, modalities: Collection[str] | None = None) -> Path:
    """The default bundle of ``kind``: the first default entry whose inputs are among
    ``modalities`` (any, when None). Raises ``InputError`` naming what is missing."""
    for entry in entries(kind):
        if entry.default and (modalities is None or set(entry.modalities) <= set(modalities)):
            return entry.folder
    raise InputError(CATALOG, f"no shipped {kind} model for the modalities {sorted(modalities or [])}",
                     "The case needs at least FLAIR; or pass a model bundle you trained")


def resolve_model(kind: str, choice: str | Path | None, modalities: Collection[str] | None = None) -> Path:
    """A front end's model choice as a bundle folder: empty or ``automatic`` means the default for
    the case's modalities, a catalogue id its shipped folder, anything else a path to a bundle."""
    text = str(choice or "").strip()
    if text in ("", ".", AUTOMATIC):
        return default_model(kind, modalities)
    known = {entry.id: entry.folder for entry in entries(kind)}
    return known.get(text, Path(text))
