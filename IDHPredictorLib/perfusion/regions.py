"""Structural-space masks brought into DSC space, and the normal-appearing white matter
reference region for rCBV."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

# BraTS labels of each subregion; "core" is what the papers call non-enhancing tumour (label 1:
# necrotic and non-enhancing core together, as in BraTS)
SUBREGION_LABELS = {"enhancing": (4,), "nonenhancing": (1,), "oedema": (2,), "whole": (1, 2, 4)}


@dataclass
class DscRegions:
    """Boolean (z, y, x) masks on the DSC grid: brain, each tumour subregion and the WM reference."""

    brain: np.ndarray
    subregions: dict[str, np.ndarray]
    reference: np.ndarray


def to_dsc_space(mask: sitk.Image, dsc_geometry: sitk.Image, transform: sitk.Transform | None = None) -> np.ndarray:
    """A binary structural mask on the DSC grid: linear interpolation of the 0/1 mask, >= 0.5.

    The physical geometry of both images decides (origin, spacing, direction), so a rotated or
    shifted DSC acquisition is handled; ``transform`` (DSC -> structural, e.g. from a rigid
    registration) corrects patient motion between the scans.
    """
    fraction = sitk.Resample(sitk.Cast(mask, sitk.sitkFloat32), dsc_geometry, transform or sitk.Transform(),
                             sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(fraction) >= 0.5


def subregion_masks(labels: sitk.Image, dsc_geometry: sitk.Image,
                    transform: sitk.Transform | None = None) -> dict[str, np.ndarray]:
    """Enhancing, non-enhancing, oedema and whole-tumour masks in DSC space (possibly empty)."""
    array = sitk.GetArrayFromImage(labels)
    masks = {}
    for name, values in SUBREGION_LABELS.items():
        image = sitk.GetImageFromArray(np.isin(array, values).astype(np.uint8))
        image.CopyInformation(labels)
        masks[name] = to_dsc_space(image, dsc_geometry, transform)
    return masks


def contralateral_white_matter(brain: np.ndarray, tumour: np.ndarray, baseline: np.ndarray,
                               dsc_geometry: sitk.Image, margin_mm: float = 10.0) -> np.ndarray:
    """Automatic reference region: brain voxels in the hemisphere without the tumour's centre,
    at least ``margin_mm`` from the tumour, whose pre-bolus signal is in the lowest 40 %.

    White matter is the darkest parenchyma on T2*-weighted baseline images (grey matter and CSF
    are brighter), so the low-signal part of the contralateral hemisphere is mostly white matter.
    """
    if not tumour.any():
        raise InputError(None, "the tumour mask is empty in DSC space", "Check the segmentation and the DSC geometry")
    x = _physical_x(dsc_geometry, brain.shape)
    midline, tumour_x = np.median(x[brain]), x[tumour].mean()
    contralateral = (x < midline) if tumour_x > midline else (x > midline)
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        _image_like(tumour, dsc_geometry), insideIsPositive=False, squaredDistance=False, useImageSpacing=True))
    candidates = brain & contralateral & (distance > margin_mm)
    if candidates.sum() < 10:
        raise InputError(None, "too few contralateral brain voxels for a white-matter reference",
                         "Give a reference region by hand (reference_mask)")
    threshold = np.percentile(baseline[candidates], 40)
    return candidates & (baseline <= threshold)


def _physical_x(geometry: sitk.Image, shape: tuple[int, int, int]) -> np.ndarray:
    """Physical x (LPS, mm) of every voxel centre, as a (z, y, x) array."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    direction = np.asarray(geometry.GetDirection()).reshape(3, 3)
    spacing = np.asarray(geometry.GetSpacing())
    return geometry.GetOrigin()[0] + direction[0, 0] * spacing[0] * x + direction[0, 1] * spacing[1] * y + direction[0, 2] * spacing[2] * z


def _image_like(mask: np.ndarray, geometry: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(geometry)
    return image
