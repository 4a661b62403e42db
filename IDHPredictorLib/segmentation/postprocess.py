"""Post-processing of the paper: largest connected region per slice, then 3-D box smoothing,
applied to the nested regions so that enhancing is inside core and core inside whole tumour."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _largest_region(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    labelled, count = ndimage.label(mask, structure=structure)
    if count <= 1:
        return mask
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == sizes.argmax()


def postprocess(labels: np.ndarray, box_size: int = 3) -> np.ndarray:
    """BraTS labels (z, y, x) -> cleaned BraTS labels with nested subregions.

    Whole tumour: the largest 3-D component, then in each axial slice its largest region (the
    paper's per-slice candidate), then a ``box_size``^3 box filter (majority). Core and
    enhancing are smoothed the same way and clipped to the region that must contain them.
    """
    whole = _largest_region(labels > 0, np.ones((3, 3, 3)))
    for z in np.flatnonzero(whole.any(axis=(1, 2))):
        whole[z] = _largest_region(whole[z])
    whole = _box_smooth(whole, box_size)
    core = _box_smooth(np.isin(labels, (1, 4)), box_size) & whole
    enhancing = _box_smooth(labels == 4, box_size) & core
    out = np.zeros(labels.shape, np.uint8)
    out[whole] = 2
    out[core] = 1
    out[enhancing] = 4
    return out


def _box_smooth(mask: np.ndarray, size: int) -> np.ndarray:
    return ndimage.uniform_filter(mask.astype(np.float32), size=size) > 0.5
