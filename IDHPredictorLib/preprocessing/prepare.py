"""Any case to the network's form, with a record of what was done and quality verdicts.

``auto`` decides from the input: skull-stripped series on one grid at about 1 mm (BraTS-ready,
zero or constant background) only need their brain found; anything else (skull and scalp,
thick slices, one grid per series) goes through the whole chain: reorientation to LPS, rigid
co-registration of every series to the reference (T1c, else FLAIR), resampling to 1 mm
isotropic on the reference's field of view, skull stripping, N4. Labels computed on the
prepared grid go back to the reference series' original grid with ``PreparedCase.to_native``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io.case import REFERENCE_ORDER, Case
from ..io.images import same_grid
from ..quality import QualityReport
from .brain import BrainDetection, InputKind, detect_brain, head_mask, voxel_volume_ml
from .checks import check_alignment, check_axis_order, check_brain_volume, check_geometry
from .steps import n4_bias_correction, register_rigid, resample_to

log = logging.getLogger(__name__)

PreprocessMode = Literal["auto", "always", "never"]
PREPROCESS_MODES: tuple[str, ...] = ("auto", "always", "never")
# Series whose thickest voxel side exceeds their thinnest by this factor (clinical thick slices)
# are not BraTS-ready: they go through the chain, which resamples them to 1 mm.
BRATS_READY_MAX_ANISOTROPY = 2.0
TARGET_SPACING_MM = 1.0
Progress = Callable[[int, int], None]
SkullStripper = Callable[[sitk.Image], sitk.Image]


@dataclass
class PreparedCase:
    """A case on one grid with its brain mask, the reference series' original grid, the input
    kind, the steps run (name, detail, seconds) and the quality verdicts so far."""

    case: Case
    native_reference: sitk.Image
    input_kind: InputKind
    steps: list[dict[str, object]] = field(default_factory=list)
    quality: QualityReport = field(default_factory=QualityReport)

    def to_native(self, labels: sitk.Image) -> sitk.Image:
        """Labels on the prepared grid, brought to the reference series' original grid."""
        if same_grid(labels, self.native_reference):
            return labels
        return sitk.Resample(labels, self.native_reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())

    def record(self) -> dict[str, object]:
        """JSON-ready account of the preparation (for preprocessing.json and result.json)."""
        return {"input_kind": self.input_kind.value, "steps": self.steps, "quality": self.quality.as_dict()}


def _reference_role(images: dict[str, sitk.Image]) -> str:
    return next(m for m in REFERENCE_ORDER if m in images)


def needs_chain(images: dict[str, sitk.Image], detections: dict[str, BrainDetection]) -> list[str]:
    """Why the case is not BraTS-ready (empty when it is)."""
    reasons = []
    if any(d.kind is InputKind.WITH_SKULL for d in detections.values()):
        reasons.append("skull and scalp present")
    reference = images[_reference_role(images)]
    if any(not same_grid(image, reference) for image in images.values()):
        reasons.append("series on different grids")
    anisotropy = max(max(image.GetSpacing()) / min(image.GetSpacing()) for image in images.values())
    if anisotropy > BRATS_READY_MAX_ANISOTROPY:
        reasons.append(f"thick slices (voxel sides differ {anisotropy:.1f}-fold)")
    return reasons


def prepare_case(case: Case, mode: PreprocessMode = "auto", skull_stripper: SkullStripper | None = None,
                 progress: Progress | None = None) -> PreparedCase:
    """Bring ``case`` (series as read, possibly each on its own grid) to the network's form.

    ``never`` takes the series as BraTS-ready and refuses raw scans; ``always`` runs the whole
    chain; ``auto`` runs it when the input needs it. ``skull_stripper`` maps an image to its brain
    mask (default: ``skull_strip.strip_skull``, an optional extra). A failed quality check raises
    ``InputError`` listing every failed check.
    """
    if mode not in PREPROCESS_MODES:
        raise InputError(None, f"unknown preprocessing mode {mode!r}", f"Choose one of {', '.join(PREPROCESS_MODES)}")
    started = time.perf_counter()
    detections = {role: detect_brain(image, case.files.get(role, case.folder)) for role, image in case.images.items()}
    kinds = {d.kind for d in detections.values()}
    kind = InputKind.WITH_SKULL if InputKind.WITH_SKULL in kinds else \
        InputKind.CONSTANT_BACKGROUND if InputKind.CONSTANT_BACKGROUND in kinds else InputKind.ZERO_BACKGROUND
    quality = QualityReport()
    quality.add("input_kind", "pass", "; ".join(f"{role} {d.describe()}" for role, d in detections.items()), kind.value)
    for role, image in case.images.items():
        check_geometry(quality, image, role)
    reasons = needs_chain(case.images, detections)
    steps = [{"step": "find brain", "detail": kind.value, "seconds": round(time.perf_counter() - started, 2)}]
    if mode == "never" and kind is InputKind.WITH_SKULL:
        quality.add("skull", "fail", "the images hold skull and scalp, and --preprocess never was asked: the network "
                    "needs skull-stripped input (use --preprocess auto)")
        quality.raise_if_failed(case.folder)
    if mode == "always" or (mode == "auto" and reasons):
        log.info("%s: running the preprocessing chain (%s)", case.case_id, "; ".join(reasons) or "asked for")
        prepared = _run_chain(case, detections, kind, skull_stripper, progress)
        prepared.steps[:0] = steps
        prepared.quality.checks[:0] = quality.checks
        prepared.quality.raise_if_failed(case.folder)
        return prepared
    prepared = _brats_ready(case, detections, kind, steps, quality)
    prepared.quality.raise_if_failed(case.folder)
    return prepared


def _brats_ready(case: Case, detections: dict[str, BrainDetection], kind: InputKind, steps: list[dict[str, object]],
                 quality: QualityReport) -> PreparedCase:
    """Skull-stripped series: a constant background set to 0, stray grids resampled (no
    registration), brain = union of the series' foregrounds."""
    native_reference = case.reference
    images = dict(case.images)
    foregrounds = {}
    for role, image in case.images.items():
        mask = _mask_image(detections[role].foreground, image)
        if detections[role].kind is InputKind.CONSTANT_BACKGROUND:
            image = sitk.Mask(image, mask)  # the publisher's background value becomes 0, as in BraTS
        if not same_grid(image, native_reference):
            log.warning("%s: %s is not on the reference grid; resampling it (linear) onto it",
                        case.files.get(role, case.folder), role)
            image = resample_to(image, native_reference)
            mask = resample_to(mask, native_reference, labels=True)
        images[role] = image
        foregrounds[role] = sitk.GetArrayFromImage(mask).astype(bool)
    reference_role = _reference_role(images)
    for role in images:
        if role != reference_role:
            check_alignment(quality, foregrounds[reference_role], foregrounds[role], role, reference_role, registered=False)
    brain = np.logical_or.reduce(list(foregrounds.values()))
    brain_image = _mask_image(brain, native_reference)
    check_brain_volume(quality, float(brain.sum()) * voxel_volume_ml(native_reference))
    check_axis_order(quality, brain, native_reference, reference_role)
    if kind is InputKind.CONSTANT_BACKGROUND:
        steps.append({"step": "zero background", "detail": "constant background outside the brain set to 0", "seconds": 0.0})
    prepared_case = replace(case, images=images, brain=brain_image)
    return PreparedCase(prepared_case, native_reference, kind, steps, quality)


def _mask_image(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(like)
    return image


def isotropic_grid(image: sitk.Image, spacing: float = TARGET_SPACING_MM) -> sitk.Image:
    """An empty image covering ``image``'s field of view with ``spacing`` mm voxels, same direction."""
    old_size, old_spacing = np.asarray(image.GetSize()), np.asarray(image.GetSpacing())
    size = np.maximum(np.round(old_size * old_spacing / spacing), 1).astype(int)
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing([spacing] * 3)
    grid.SetDirection(image.GetDirection())
    # keep the field of view's outer corner: the first voxel centre moves by half the size change
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    shift = direction @ ((spacing - old_spacing) / 2.0)
    grid.SetOrigin(tuple(np.asarray(image.GetOrigin()) + shift))
    return grid


def _run_chain(case: Case, detections: dict[str, BrainDetection], kind: InputKind,
               skull_stripper: SkullStripper | None, progress: Progress | None) -> PreparedCase:
    """Reorient, register to the reference, resample to 1 mm, skull-strip (raw input), N4."""
    reference_role = _reference_role(case.images)
    total = 2 * len(case.images) + 1
    done = 0
    steps: list[dict[str, object]] = []
    quality = QualityReport()

    def step(name: str, detail: str, since: float) -> None:
        nonlocal done
        done += 1
        steps.append({"step": name, "detail": detail, "seconds": round(time.perf_counter() - since, 2)})
        if progress is not None:
            progress(min(done, total), total)

    # skull-stripped inputs: their background becomes 0 so that registration and resampling see air
    native = {role: image if detections[role].kind is InputKind.WITH_SKULL else
              sitk.Mask(image, _mask_image(detections[role].foreground, image)) for role, image in case.images.items()}
    oriented = {role: sitk.DICOMOrient(image, "LPS") for role, image in native.items()}
    target = isotropic_grid(oriented[reference_role])
    fixed = oriented[reference_role]
    resampled: dict[str, sitk.Image] = {}
    for role, image in oriented.items():
        since = time.perf_counter()
        if role == reference_role:
            resampled[role] = resample_to(image, target)
            step("resample", f"{role} to {TARGET_SPACING_MM:g} mm isotropic", since)
            continue
        transform = register_rigid(fixed, image)
        resampled[role] = resample_to(image, target, transform)
        angles = np.degrees(np.asarray(transform.GetParameters()[:3])) if hasattr(transform, "GetParameters") else []
        step("register", f"{role} to {reference_role} (rigid, Mattes MI), rotation {_degrees(angles)}", since)
    foregrounds = {role: head_mask(image) if kind is InputKind.WITH_SKULL else sitk.GetArrayFromImage(image) != 0
                   for role, image in resampled.items()}
    for role in resampled:
        if role != reference_role:
            check_alignment(quality, foregrounds[reference_role], foregrounds[role], role, reference_role, registered=True)
    quality.raise_if_failed(case.folder)  # before the slow steps
    since = time.perf_counter()
    if kind is InputKind.WITH_SKULL:
        stripper = skull_stripper
        if stripper is None:
            from .skull_strip import strip_skull as stripper
        brain_image = sitk.Cast(stripper(resampled[reference_role]) > 0, sitk.sitkUInt8)
        brain_image.CopyInformation(target)
        step("skull strip", f"{getattr(stripper, 'description', stripper.__name__)} on {reference_role}", since)
    else:
        brain_image = _mask_image(np.logical_or.reduce(list(foregrounds.values())), target)
        step("brain mask", "union of the skull-stripped series", since)
    brain = sitk.GetArrayFromImage(brain_image).astype(bool)
    check_brain_volume(quality, float(brain.sum()) * voxel_volume_ml(target))
    check_axis_order(quality, brain, target, reference_role)
    quality.raise_if_failed(case.folder)  # before N4
    images = {}
    for role, image in resampled.items():
        since = time.perf_counter()
        images[role] = n4_bias_correction(image, brain_image)
        step("N4", f"{role} bias field corrected inside the brain", since)
    labels = None if case.labels is None else resample_to(case.labels, target, labels=True)
    prepared_case = replace(case, images=images, labels=labels, brain=brain_image)
    return PreparedCase(prepared_case, case.reference, kind, steps, quality)


def _degrees(angles: np.ndarray) -> str:
    return "(" + ", ".join(f"{a:.1f}" for a in angles) + ") degrees"


def prepare_case_folder(folder: str | Path, modalities: tuple[str, ...], mode: PreprocessMode = "auto",
                        labels: bool = True, skull_stripper: SkullStripper | None = None,
                        progress: Progress | None = None) -> PreparedCase:
    """Read a case folder's ``modalities`` as they are (each on its own grid) and prepare them."""
    from ..io.case import read_case

    case = read_case(folder, modalities=modalities, labels=labels, dsc=False, resample=False)
    return prepare_case(case, mode, skull_stripper, progress)


def write_prepared(prepared: PreparedCase, out_dir: str | Path) -> Path:
    """Write a BraTS-layout case folder: each series, ``<id>_brainmask``, ``<id>_seg`` when the case
    had labels, and ``<id>_preprocessing.json`` (steps and quality). All-or-nothing."""
    from ..io.atomic import atomic_directory

    case = prepared.case
    out_dir = Path(out_dir)
    if out_dir.resolve() == Path(case.folder).resolve():
        raise InputError(out_dir, "is the input case folder", "Write the preprocessed case to a new folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a folder", "Give a folder name for the preprocessed case")
    with atomic_directory(out_dir) as tmp:
        for role, image in case.images.items():
            sitk.WriteImage(image, str(tmp / f"{case.case_id}_{role}.nii.gz"), useCompression=True)
        sitk.WriteImage(case.brain, str(tmp / f"{case.case_id}_brainmask.nii.gz"), useCompression=True)
        if case.labels is not None:
            sitk.WriteImage(case.labels, str(tmp / f"{case.case_id}_seg.nii.gz"), useCompression=True)
        record = {"case_id": case.case_id, "source": str(case.folder), **prepared.record()}
        (tmp / f"{case.case_id}_preprocessing.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out_dir
