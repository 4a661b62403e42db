"""Contrast profile of a case, to compare phantom and real MRI on equal terms.

For each modality the image is z-scored inside the brain mask (non-zero voxels), and each
region's mean is reported relative to normal-appearing white matter, in brain-sd units.
White matter and CSF are found the same way in every case, from the T1 image: non-tumour
brain voxels above the 70th / below the 8th T1 percentile (no tissue segmentation needed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REGIONS = {"csf": None, "core": 1, "oedema": 2, "enhancing": 4}


def contrast_profile(images: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, dict[str, float]]:
    """{modality: {region: mean z-score minus white-matter mean z-score}} for regions present."""
    t1 = images["t1"].astype(np.float64)
    brain = t1 > 0
    normal = brain & (labels == 0)
    white_matter = normal & (t1 > np.percentile(t1[normal], 70))
    csf = normal & (t1 < np.percentile(t1[normal], 8))
    profile = {}
    for modality, image in images.items():
        values = image.astype(np.float64)
        z = (values - values[brain].mean()) / values[brain].std()
        reference = z[white_matter].mean()
        regions = {name: (csf if label is None else labels == label) for name, label in REGIONS.items()}
        profile[modality] = {name: float(z[mask].mean() - reference) for name, mask in regions.items() if mask.sum() > 50}
    return profile


def real_cases_dir() -> Path | None:
    """Folder of real BraTS-layout cases for realism checks, if one is available locally.

    $IDHPREDICTOR_REALDATA, else ``../shared/realdata`` beside the checkout. Real data never
    ships with the project.
    """
    candidates = [os.environ.get("IDHPREDICTOR_REALDATA", ""), str(Path(__file__).resolve().parents[3] / "shared" / "realdata")]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


def real_dsc_curves() -> tuple[dict[str, np.ndarray], dict[str, float]] | None:
    """The real dual-echo region curves (``dsc-roi-curves`` in ``real_cases_dir``): signal per
    column of curves.csv (``aif_te1`` ... ``tumour_te2``) and acquisition.json (TR, TE1, TE2 in
    seconds); None when they are not here."""
    import csv
    import json

    folder = real_cases_dir()
    if folder is None or not (folder / "dsc-roi-curves" / "curves.csv").exists():
        return None
    acquisition = json.loads((folder / "dsc-roi-curves" / "acquisition.json").read_text(encoding="utf-8"))
    with open(folder / "dsc-roi-curves" / "curves.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {name: np.array([float(row[name]) for row in rows]) for name in rows[0]}, acquisition
