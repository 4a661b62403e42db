"""A PNG montage of one phantom patient beside a real case, for a person to judge realism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..io.atomic import atomic_path
from ..plotting import LABEL_COLOURS, LABEL_NAMES, label_rgba, plt
from .realism import real_cases_dir
from .tissue import MODALITIES


def _load_case(folder: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    cid = folder.name
    images = {m: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{cid}_{m}.nii.gz"))) for m in MODALITIES}
    return images, sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{cid}_seg.nii.gz")))


def _tumour_slice(labels: np.ndarray) -> int:
    """Axial slice with the most tumour."""
    return int(np.argmax((labels > 0).sum(axis=(1, 2))))


def _overlay(ax: plt.Axes, background: np.ndarray, labels: np.ndarray) -> None:
    ax.imshow(background, cmap="gray", vmin=0, vmax=np.percentile(background[background > 0], 99.5))
    ax.imshow(label_rgba(labels))


def _dsc_curves(case_dir: Path, labels_struct: sitk.Image) -> dict[str, np.ndarray]:
    """Mean DSC signal in the whole tumour, in normal brain and at the true AIF voxels."""
    cid = case_dir.name
    series = sitk.ReadImage(str(case_dir / f"{cid}_dsc.nii.gz"))
    sidecar = json.loads((case_dir / f"{cid}_dsc.json").read_text(encoding="utf-8"))
    frames = sitk.GetArrayFromImage(series)  # (t, z, y, x)
    first = sitk.Extract(series, [*series.GetSize()[:3], 0], [0, 0, 0, 0])
    labels = sitk.GetArrayFromImage(sitk.Resample(labels_struct, first, sitk.Transform(), sitk.sitkNearestNeighbor))
    baseline = frames[:5].mean(axis=0)
    normal = (labels == 0) & (baseline > np.percentile(baseline, 60))
    aif = np.array([frames[:, z, y, x] for x, y, z in sidecar["AifVoxels"]]).mean(axis=0)
    t = np.arange(frames.shape[0]) * sidecar["RepetitionTime"]
    return {"t": t, "whole tumour": frames[:, labels > 0].mean(axis=1), "normal brain": frames[:, normal].mean(axis=1),
            "AIF": aif}


def write_preview(case_dir: str | Path, out_png: str | Path, real_case_dir: str | Path | None = None) -> Path:
    """Montage: 4 modalities + labels of a phantom case (and of a real case if given), DSC curves."""
    case_dir, out_png = Path(case_dir), Path(out_png)
    rows = [("phantom " + case_dir.name, *_load_case(case_dir))]
    if real_case_dir is not None and Path(real_case_dir).is_dir():
        rows.append(("real " + Path(real_case_dir).name, *_load_case(Path(real_case_dir))))
    fig, axes = plt.subplots(len(rows) + 1, 5, figsize=(15, 3.2 * (len(rows) + 1)))
    for r, (title, images, labels) in enumerate(rows):
        z = _tumour_slice(labels)
        for c, modality in enumerate(MODALITIES):
            image = images[modality][z]
            axes[r, c].imshow(image, cmap="gray", vmin=0, vmax=np.percentile(image[image > 0], 99.5))
            axes[r, c].set_title(f"{title}\n{modality} (slice {z})", fontsize=9)
        _overlay(axes[r, 4], images["flair"][z], labels[z])
        axes[r, 4].set_title("labels on FLAIR", fontsize=9)
    for ax in axes[:-1].ravel():
        ax.axis("off")
    cid = case_dir.name
    curves = _dsc_curves(case_dir, sitk.ReadImage(str(case_dir / f"{cid}_seg.nii.gz")))
    curve_ax = axes[-1, 0]
    for name in ("AIF", "whole tumour", "normal brain"):
        curve_ax.plot(curves["t"], curves[name] / curves[name][:5].mean(), label=name)
    curve_ax.set_xlabel("time (s)")
    curve_ax.set_ylabel("DSC signal / baseline")
    curve_ax.legend(fontsize=8)
    curve_ax.set_title(f"{cid}: DSC signal-time curves", fontsize=9)
    legend_ax = axes[-1, 1]
    legend_ax.axis("off")
    for i, (value, name) in enumerate(LABEL_NAMES.items()):
        legend_ax.text(0.0, 0.8 - 0.2 * i, f"label {value}: {name}", color=LABEL_COLOURS[value], fontsize=10)
    for ax in axes[-1, 2:]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return out_png


def find_real_case() -> Path | None:
    """The last real case folder in ``real_cases_dir()``, or None."""
    from ..io.cohort import brats_case_folders

    folder = real_cases_dir()
    cases = brats_case_folders(folder) if folder else []
    return cases[-1] if cases else None
