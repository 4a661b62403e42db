"""Overlay figure of a predicted segmentation beside the reference, on the FLAIR."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path
from ..plotting import label_rgba, plt


def overlay_figure(flair: np.ndarray, predicted: np.ndarray, reference: np.ndarray | None, out_png: str | Path,
                   title: str, slices: int = 3) -> Path:
    """PNG: ``slices`` axial slices through the reference (or prediction) tumour; per slice the
    FLAIR, the prediction and, when given, the reference (labels 1 red, 2 green, 4 yellow)."""
    basis = reference if reference is not None and reference.any() else predicted
    zs = np.flatnonzero((basis > 0).any(axis=(1, 2)))
    chosen = np.linspace(zs[0], zs[-1], slices + 2)[1:-1].round().astype(int) if len(zs) else [flair.shape[0] // 2]
    columns = 3 if reference is not None else 2
    fig, axes = plt.subplots(len(chosen), columns, figsize=(3.2 * columns, 3.2 * len(chosen)), squeeze=False)
    vmax = np.percentile(flair[flair > 0], 99.5) if (flair > 0).any() else 1.0
    for row, z in enumerate(chosen):
        panels = [("FLAIR", None), ("prediction", predicted)] + ([("reference", reference)] if reference is not None else [])
        for col, (name, labels) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(flair[z], cmap="gray", vmin=0, vmax=vmax)
            if labels is not None:
                ax.imshow(label_rgba(labels[z]))
            ax.set_title(f"{name}, slice {z}", fontsize=9)
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return Path(out_png)
