"""Shared figure helpers: a headless matplotlib and BraTS label colours."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are written to files; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABEL_COLOURS = {1: (0.9, 0.2, 0.2), 2: (0.2, 0.8, 0.2), 4: (1.0, 0.85, 0.1)}
LABEL_NAMES = {1: "necrotic / non-enhancing core", 2: "oedema", 4: "enhancing"}

__all__ = ["LABEL_COLOURS", "LABEL_NAMES", "label_rgba", "plt"]


def label_rgba(labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGBA image (..., 4) colouring BraTS labels 1 red, 2 green, 4 yellow; 0 transparent."""
    rgba = np.zeros((*labels.shape, 4))
    for value, colour in LABEL_COLOURS.items():
        rgba[labels == value] = (*colour, alpha)
    return rgba
