"""Find the brain in any structural input and say what kind of input it is.

Three kinds reach the tool: skull-stripped images with a zero background (BraTS), skull-stripped
images whose background is a constant non-zero value (intensities z-scored or shifted by their
publisher, as in many public data sets and other tools' outputs), and raw scans with skull and
scalp, whose background is scanner noise. Taking "non-zero" as the brain is right only for the
first; on the second it selects the whole volume and the network sees nonsense.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

# A constant background holds at least this share of the volume and most of its border voxels.
BACKGROUND_SHARE = 0.10
BORDER_SHARE = 0.5
# A skull-stripped adult brain (with its tumour) is 0.9-1.9 L; a head with skull and scalp is
# 3-5 L and a single 5 mm axial stack over the head still well above 2.3 L.
HEAD_VOLUME_ML = 2300.0


class InputKind(StrEnum):
    """What a structural image holds around the brain."""

    ZERO_BACKGROUND = "skull-stripped, zero background"
    CONSTANT_BACKGROUND = "skull-stripped, constant non-zero background"
    WITH_SKULL = "raw, with skull and scalp"


@dataclass
class BrainDetection:
    """The kind of input, its background value (None for scanner noise), the foreground mask
    (the brain when skull-stripped, the head when not) and its volume in millilitres."""

    kind: InputKind
    background_value: float | None
    foreground: np.ndarray  # bool (z, y, x)
    volume_ml: float

    def describe(self) -> str:
        """One line for logs and reports."""
        value = "" if self.background_value in (None, 0.0) else f" {self.background_value:.4g}"
        region = "head" if self.kind is InputKind.WITH_SKULL else "brain"
        return f"{self.kind.value}{value}; {region} {self.volume_ml:.0f} mL"


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel in millilitres."""
    return float(np.prod(image.GetSpacing()[:3])) / 1000.0


def border_voxels(array: np.ndarray) -> np.ndarray:
    """The voxels on the six faces of a (z, y, x) array, flattened."""
    return np.concatenate([array[[0, -1]].ravel(), array[:, [0, -1]].ravel(), array[:, :, [0, -1]].ravel()])


def constant_background(array: np.ndarray) -> float | None:
    """The value filling the background, when one exact value fills most of the border and a
    tenth of the volume; None when the background is noise (a raw scan)."""
    border = border_voxels(array)
    values, counts = np.unique(border, return_counts=True)
    candidate = values[counts.argmax()]
    if counts.max() < BORDER_SHARE * border.size:
        return None
    if np.count_nonzero(array == candidate) < BACKGROUND_SHARE * array.size:
        return None
    return float(candidate)


def head_mask(image: sitk.Image) -> np.ndarray:
    """Head (brain, skull, scalp) of a raw scan: Otsu threshold, largest component, holes
    filled slice by slice (thick-slice stacks have open ends)."""
    smoothed = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), 1.0)
    foreground = sitk.OtsuThreshold(smoothed, 0, 1)
    foreground = sitk.BinaryMorphologicalClosing(foreground, [2, 2, 1])
    largest = sitk.RelabelComponent(sitk.ConnectedComponent(foreground), sortByObjectSize=True) == 1
    filled = sitk.BinaryFillhole(sitk.Cast(largest, sitk.sitkUInt8))
    return sitk.GetArrayFromImage(filled).astype(bool)


def detect_brain(image: sitk.Image, source: object = None) -> BrainDetection:
    """Classify ``image`` (zero background, constant background, with skull) and return its
    foreground; ``source`` names the file in errors."""
    array = sitk.GetArrayViewFromImage(image)
    if array.size == 0 or np.ptp(array) == 0:
        raise InputError(source, "image is blank (one value everywhere)", "Check the export; the series holds no anatomy")
    background = constant_background(array)
    if background is not None:
        foreground = np.asarray(array != background)
        volume = float(foreground.sum()) * voxel_volume_ml(image)
        kind = InputKind.ZERO_BACKGROUND if background == 0 else InputKind.CONSTANT_BACKGROUND
        if volume <= HEAD_VOLUME_ML:
            return BrainDetection(kind, background, foreground, volume)
        # the scanner zeroed the air around a whole head: skull and scalp are still there
    foreground = head_mask(image)
    return BrainDetection(InputKind.WITH_SKULL, None, foreground, float(foreground.sum()) * voxel_volume_ml(image))
