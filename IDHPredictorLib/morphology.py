"""Mask helpers shared by the simulator and the segmentation post-processing."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FULLY_CONNECTED_3D = np.ones((3, 3, 3))


def largest_component(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    """The largest connected component of a boolean mask (``structure`` as in scipy.ndimage.label)."""
    labelled, count = ndimage.label(mask, structure=structure)
    if count <= 1:
        return mask
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == sizes.argmax()
