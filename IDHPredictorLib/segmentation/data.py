"""Network input from a case: modalities stacked, z-scored inside the brain, cropped to the brain."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io.case import Case
from ..preprocessing import zscore_array
from .network import CLASS_TO_LABEL, HALF

LABEL_TO_CLASS = np.zeros(256, np.int64)
for _class, _label in enumerate(CLASS_TO_LABEL):
    LABEL_TO_CLASS[_label] = _class


@dataclass
class NetworkInput:
    """Channels (C, z, y, x) float32 of the brain box, the box's slices in the full volume, the
    brain mask of the box and (when known) target classes (z, y, x) in 0..3."""

    channels: np.ndarray
    box: tuple[slice, slice, slice]
    brain: np.ndarray
    classes: np.ndarray | None
    full_shape: tuple[int, int, int]


def brain_box(brain: np.ndarray, margin: int = 2) -> tuple[slice, slice, slice]:
    """Bounding box of the brain mask plus ``margin`` voxels, clipped to the volume."""
    if not brain.any():
        raise InputError(None, "the images are empty (no brain voxels)", "Check that the case holds skull-stripped MRI")
    lo = np.argwhere(brain).min(axis=0)
    hi = np.argwhere(brain).max(axis=0) + 1
    return tuple(slice(max(int(low) - margin, 0), min(int(h) + margin, n)) for low, h, n in zip(lo, hi, brain.shape))


def network_input(case: Case, modalities: tuple[str, ...], with_labels: bool = True) -> NetworkInput:
    """Stack ``modalities`` of ``case`` (all on the reference grid) into network input."""
    missing = [m for m in modalities if m not in case.images]
    if missing:
        raise InputError(case.folder, f"missing modality {', '.join(missing)} needed by the model",
                         "Add the modality or choose a model bundle for the modalities you have")
    arrays = [sitk.GetArrayFromImage(case.images[m]).astype(np.float32) for m in modalities]
    brain = np.logical_or.reduce([a != 0 for a in arrays]) if case.brain is None \
        else sitk.GetArrayFromImage(case.brain).astype(bool)
    box = brain_box(brain, margin=2)
    # the paper's per-channel mean removal and variance normalisation, with the case's brain
    # statistics: per-patch statistics would break the exact equality of dense and patch-wise inference
    channels = np.stack([zscore_array(a, brain, case.files.get(m, case.folder))[box] for m, a in zip(modalities, arrays)])
    classes = None
    if with_labels and case.labels is not None:
        classes = LABEL_TO_CLASS[sitk.GetArrayFromImage(case.labels)[box]]
    return NetworkInput(channels, box, brain[box], classes, arrays[0].shape)


def tissue_map(data: NetworkInput) -> np.ndarray:
    """(z, y, x) uint8 classes for domain randomisation: tumour classes 1-3, the rest of the brain
    split into terciles of channel 0 (4-6), 0 outside; needs ``data.classes``."""
    tissue = np.zeros(data.classes.shape, np.uint8)
    reference = data.channels[0]
    cuts = np.percentile(reference[data.brain], [33.3, 66.7])
    tissue[data.brain] = 4 + np.digitize(reference[data.brain], cuts)
    tissue[data.classes > 0] = data.classes[data.classes > 0]
    return tissue


def axial_case(case: Case, modalities: tuple[str, ...]) -> Case:
    """``case`` without labels, its ``modalities`` (and brain mask) permuted/flipped to LPS axes, so
    that numpy axis 0 runs inferior-superior and the network sees axial slices."""
    axial = {m: sitk.DICOMOrient(case.images[m], "LPS") for m in modalities if m in case.images}
    brain = None if case.brain is None else sitk.DICOMOrient(case.brain, "LPS")
    return replace(case, images=axial, labels=None, brain=brain)


def pad_for_patches(channels: np.ndarray, pad: int = HALF) -> np.ndarray:
    """Zero-pad y and x (default: the patch half-width, so every voxel has a full 33x33 window)."""
    return np.pad(channels, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def extract_patches(padded: np.ndarray, centres: np.ndarray, size: int, pad: int) -> np.ndarray:
    """(n, C, size, size) axial windows centred on (z, y, x) voxels of the unpadded volume.

    ``padded`` is the (C, z, y, x) volume zero-padded by ``pad`` >= size // 2 in y and x.
    """
    start = pad - size // 2
    out = np.empty((len(centres), padded.shape[0], size, size), padded.dtype)
    for i, (z, y, x) in enumerate(centres):
        out[i] = padded[:, z, y + start:y + start + size, x + start:x + start + size]
    return out
