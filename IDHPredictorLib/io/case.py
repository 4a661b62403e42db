"""Find, read and validate one case folder in BraTS 2020 or BraTS 2023 naming."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .dsc import DscSeries, read_dsc_series
from .images import IMAGE_SUFFIXES, labels_on_grid, read_image, same_grid

log = logging.getLogger(__name__)

MODALITIES = ("t1", "t1ce", "t2", "flair")
# Suffix after the case id, per role: BraTS 2020 (<id>_t1ce) and BraTS 2023 (<id>-t1c).
NAMING = {
    "t1": ("_t1", "-t1n"), "t1ce": ("_t1ce", "-t1c"), "t2": ("_t2", "-t2w"), "flair": ("_flair", "-t2f"),
    "seg": ("_seg", "-seg"), "dsc": ("_dsc", "-dsc"),
    # a dual-echo DSC series: <id>_dsc holds the long (T2*-weighted) echo, this the short one
    "dsc_short": ("_dsc-short", "-dsc-short"),
}
REFERENCE_ORDER = ("t1ce", "flair", "t2", "t1")  # the first present is the grid the others must share
VALID_LABELS = {0, 1, 2, 3, 4}


@dataclass
class Case:
    """One patient's images on a common grid; ``labels`` uses BraTS values 1, 2, 4; ``brain``
    (UInt8, same grid) when known: set by ``preprocessing.prepare``, else the non-zero voxels."""

    case_id: str
    folder: Path
    images: dict[str, sitk.Image]
    labels: sitk.Image | None = None
    dsc: DscSeries | None = None
    files: dict[str, Path] = field(default_factory=dict)
    brain: sitk.Image | None = None

    @property
    def reference(self) -> sitk.Image:
        """The structural image whose grid all others share."""
        return self.images[next(m for m in REFERENCE_ORDER if m in self.images)]


def find_case_files(folder: str | Path) -> tuple[str, dict[str, Path]]:
    """Return the case id and the file (or DICOM folder) of each role present in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "is not a case folder", "Give a folder holding <id>_t1ce.nii.gz, <id>_flair.nii.gz, ...")
    found: dict[str, Path] = {}
    case_ids = set()
    for entry in sorted(folder.iterdir()):
        stem = _stem(entry)
        match = None if stem is None else role_of(stem)
        if match is None:
            continue
        role, case_id = match
        if role in found:
            raise InputError(entry, f"is a second {role} file (first: {found[role].name})",
                             "Keep one file per modality in the case folder")
        found[role] = entry
        case_ids.add(case_id)
    if not any(m in found for m in MODALITIES):
        raise InputError(folder, "holds no recognisable modality file",
                         "Name files <id>_t1, _t1ce, _t2, _flair (BraTS 2020) or <id>-t1n, -t1c, -t2w, -t2f (BraTS 2023)")
    if len(case_ids) > 1:
        raise InputError(folder, f"mixes case ids {sorted(case_ids)}", "Keep one patient per folder")
    return case_ids.pop(), found


def role_of(stem: str) -> tuple[str, str] | None:
    """(role, case id) for a file stem such as ``BraTS-GLI-00001-000-t1c`` or ``P1_flair``."""
    for role, suffixes in NAMING.items():
        for suffix in suffixes:
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                return role, stem[: -len(suffix)]
    return None


def _stem(entry: Path) -> str | None:
    """File name without image suffix; DICOM folders count by their name; other files are ignored."""
    name = entry.name
    if name.startswith("."):
        return None
    if entry.is_dir():
        return name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def read_case(folder: str | Path, modalities: tuple[str, ...] = MODALITIES, labels: bool = True,
              dsc: bool = True, resample: bool = True) -> Case:
    """Read the requested modalities (all required), the label map and DSC series when present.

    Structural images not on the reference grid are resampled onto it (linear) with a logged
    warning, unless ``resample`` is False (raw series, each on its own grid, for
    ``preprocessing.prepare``); a label map on another grid is resampled with nearest neighbour.
    """
    case_id, files = find_case_files(folder)
    missing = [m for m in modalities if m not in files]
    if missing:
        wanted = ", ".join(f"{case_id}{NAMING[m][0]}.nii.gz" for m in missing)
        raise InputError(folder, f"missing modality {', '.join(missing)}",
                         f"Add {wanted} (or BraTS 2023 names), or segment with a model bundle that needs fewer "
                         "modalities (segment --model)")
    images = {m: sitk.Cast(read_image(files[m]), sitk.sitkFloat32) for m in modalities}
    case = Case(case_id, Path(folder), images, files={k: v for k, v in files.items()})
    reference = case.reference
    for modality, image in images.items():
        if resample and not same_grid(image, reference):
            log.warning("%s: %s is not on the reference grid; resampling it (linear) onto %s",
                        files[modality], modality, next(m for m in REFERENCE_ORDER if m in images))
            images[modality] = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    if labels and "seg" in files:
        case.labels = read_label_map(files["seg"], reference)
    if dsc and "dsc" in files:
        case.dsc = read_dsc_series(files["dsc"], short_echo=files.get("dsc_short"))
    return case


def read_label_map(path: Path, reference: sitk.Image | None = None) -> sitk.Image:
    """Read a BraTS label map, check its values, map BraTS 2023's enhancing 3 to 4, return UInt8."""
    image = read_image(path)
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.all(array == np.round(array)):
        raise InputError(path, "label map has non-integer values", "Save the segmentation as an integer label map")
    values = set(np.unique(array).astype(int).tolist())
    unknown = values - VALID_LABELS
    if unknown:
        raise InputError(path, f"label map has values {sorted(unknown)} outside BraTS labels {{0, 1, 2, 4}} (3 accepted)",
                         "Relabel to 1 necrotic/non-enhancing core, 2 oedema, 4 enhancing tumour")
    if values <= {0}:
        raise InputError(path, "label map is empty (no tumour voxels)",
                         "Segment the tumour first (idh-predictor segment, or Slicer's Segment Editor)")
    labels = sitk.Cast(image, sitk.sitkUInt8)
    if 3 in values:
        labels = sitk.ChangeLabel(labels, {3: 4})
    if reference is not None and not same_grid(labels, reference):
        log.warning("%s: label map is not on the image grid; resampling it (nearest neighbour)", path)
        labels = labels_on_grid(labels, reference)
        if not sitk.GetArrayViewFromImage(labels).any():
            raise InputError(path, "label map does not overlap the images (no tumour voxel falls inside their field of view)",
                             "Use the label map made on this case's images, in the same space")
    return labels
