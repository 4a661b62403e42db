"""Input quality checks: voxel geometry, brain volume, brain shape (axis order) and the
alignment of each series with the reference. Each adds a verdict to a ``QualityReport``."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..quality import QualityReport

# Skull-stripped adult brains with a glioma measure about 0.9-1.9 L; outside 0.6-2.3 L the
# mask holds skull, misses brain, or the header's voxel size is wrong.
BRAIN_ML_PLAUSIBLE = (900.0, 1900.0)
BRAIN_ML_POSSIBLE = (600.0, 2300.0)
# Slices thicker than this lose small tumour parts; far thicker cannot be segmented.
SLICE_MM_WARN, SLICE_MM_FAIL = 6.0, 10.0
# Series whose foregrounds overlap less than this (Dice) after alignment are not the same head
# in the same place: axes swapped, a failed registration or another patient.
ALIGNMENT_DICE_FAIL = 0.80
# A human brain is longest front to back; a brain longer left-right or head-foot by this factor
# means the axes were swapped or the header's orientation is wrong.
AXIS_ORDER_RATIO = 1.08


def check_geometry(report: QualityReport, image: sitk.Image, role: str) -> None:
    """Voxel size and direction cosines of one series."""
    spacing = np.asarray(image.GetSpacing())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if not np.allclose(direction @ direction.T, np.eye(3), atol=1e-3):
        report.add(f"{role}_orientation", "fail", "direction cosines are not orthonormal (a corrupt header)", None)
        return
    thickest = float(spacing.max())
    if thickest > SLICE_MM_FAIL or spacing.min() < 0.1:
        report.add(f"{role}_spacing", "fail", f"voxel size {_mm(spacing)} is implausible for brain MRI", thickest)
    elif thickest > SLICE_MM_WARN:
        report.add(f"{role}_spacing", "warn", f"voxel size {_mm(spacing)}: slices thicker than {SLICE_MM_WARN:g} mm "
                   "blur small tumour parts", thickest)
    else:
        report.add(f"{role}_spacing", "pass", f"voxel size {_mm(spacing)}", thickest)


def check_brain_volume(report: QualityReport, volume_ml: float, what: str = "brain mask") -> None:
    """Plausible adult brain volume."""
    low, high = BRAIN_ML_POSSIBLE
    if not low <= volume_ml <= high:
        report.add("brain_volume", "fail", f"{what} is {volume_ml:.0f} mL, outside {low:.0f}-{high:.0f} mL: "
                   "not a skull-stripped adult brain (skull left in, brain missing, or a wrong voxel size)", volume_ml)
    elif not BRAIN_ML_PLAUSIBLE[0] <= volume_ml <= BRAIN_ML_PLAUSIBLE[1]:
        report.add("brain_volume", "warn", f"{what} is {volume_ml:.0f} mL, outside the usual "
                   f"{BRAIN_ML_PLAUSIBLE[0]:.0f}-{BRAIN_ML_PLAUSIBLE[1]:.0f} mL: check the mask", volume_ml)
    else:
        report.add("brain_volume", "pass", f"{what} is {volume_ml:.0f} mL", volume_ml)


def physical_extent_lps(mask: np.ndarray, image: sitk.Image) -> np.ndarray:
    """Extent (mm) of a (z, y, x) mask along the patient's L-R, A-P and S-I axes."""
    corners = np.argwhere(mask)
    if len(corners) == 0:
        return np.zeros(3)
    points = np.array([image.TransformContinuousIndexToPhysicalPoint([float(i) for i in index[::-1]])
                       for index in (corners.min(axis=0), corners.max(axis=0))])
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    voxel = np.abs(direction @ np.asarray(image.GetSpacing()))
    return np.abs(points[1] - points[0]) + voxel


def check_axis_order(report: QualityReport, mask: np.ndarray, image: sitk.Image, role: str) -> None:
    """The brain must be longest front to back (A-P) in patient coordinates."""
    extent = physical_extent_lps(mask, image)
    lr, ap, si = extent
    if max(lr, si) > AXIS_ORDER_RATIO * ap:
        longest = "left-right" if lr >= si else "head-foot"
        report.add(f"{role}_axes", "fail", f"the brain is longest {longest} ({_mm(extent)} L-R, A-P, S-I): "
                   "the image axes are swapped or its header's orientation is wrong", float(max(lr, si) / ap))
    else:
        report.add(f"{role}_axes", "pass", f"brain extent {_mm(extent)} (L-R, A-P, S-I)", float(max(lr, si) / ap))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def check_alignment(report: QualityReport, reference: np.ndarray, moving: np.ndarray, role: str, reference_role: str,
                    registered: bool) -> None:
    """Foreground overlap of a series with the reference series on the same grid."""
    overlap = dice(reference, moving)
    how = "after rigid registration" if registered else "as given (no registration)"
    if overlap < ALIGNMENT_DICE_FAIL:
        cause = "the registration failed" if registered else "the series is not aligned (axes swapped, another patient, or it needs --preprocess always)"
        report.add(f"{role}_alignment", "fail", f"{role} overlaps {reference_role} with Dice {overlap:.2f} {how}: {cause}", overlap)
    else:
        report.add(f"{role}_alignment", "pass", f"{role} overlaps {reference_role} with Dice {overlap:.2f} {how}", overlap)


def _mm(values: np.ndarray) -> str:
    return " x ".join(f"{v:.3g}" for v in values) + " mm"
