"""The paper's "normal radiomics" baseline: hand-crafted intensity, shape, texture and wavelet
features of the same whole-tumour masks, computed by pyradiomics (the ``pyradiomics-bhklab``
wheel, an optional extra: ``pip install idhpredictor[radiomics]``)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.case import find_case_files, read_case
from .cache import DescriptorCache, files_fingerprint
from .descriptors import tumour_mask

# Intensities are z-scored by pyradiomics (normalize, scale 100) so that one bin width suits all
# modalities; preCrop keeps the wavelet filtering to the tumour's bounding box.
SETTINGS = {"normalize": True, "normalizeScale": 100, "binWidth": 25, "preCrop": True, "padDistance": 5,
            "label": 1, "geometryTolerance": 1e-4}
IMAGE_TYPES = {"Original": {}, "Wavelet": {}}


def _extractor():
    try:
        import radiomics
        from radiomics import featureextractor
    except ImportError as error:
        raise InputError(None, "pyradiomics is not installed (needed for the radiomics baseline)",
                         "pip install pyradiomics-bhklab, or run without --radiomics") from error
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(**SETTINGS)
    extractor.enableAllFeatures()
    extractor.enableImageTypes(**IMAGE_TYPES)
    return extractor, radiomics.__version__


def settings_key() -> str:
    """Cache key: the settings above and the pyradiomics version."""
    _, version = _extractor()
    text = json.dumps({"settings": SETTINGS, "types": IMAGE_TYPES, "version": version}, sort_keys=True)
    return "radiomics-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def case_radiomics(case_dir: Path, modalities: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Feature names (``<modality>_<image type>_<class>_<feature>``) and values of one labelled case."""
    case = read_case(case_dir, tuple(modalities), labels=True, dsc=False)
    if case.labels is None:
        raise InputError(case_dir, "has no tumour mask (<id>_seg.nii.gz)", "Segment the case first")
    extractor, _ = _extractor()
    mask = tumour_mask(case.labels)
    names, values = [], []
    for modality in modalities:
        result = extractor.execute(case.images[modality], mask)
        for name, value in result.items():
            if name.startswith("diagnostics_") or (name.startswith("original_shape") and modality != modalities[0]):
                continue  # shape is the same for every modality: keep it once
            names.append(f"{modality}_{name}")
            values.append(float(value))
    return names, np.asarray(values, dtype=np.float64)


def _cached_case(args: tuple[Path, tuple[str, ...], Path | None, str]) -> tuple[list[str], np.ndarray]:
    case_dir, modalities, cache_dir, key = args
    case_id, files = find_case_files(case_dir)
    fingerprint = files_fingerprint([files[m] for m in modalities if m in files] + ([files["seg"]] if "seg" in files else []))
    cache = DescriptorCache(cache_dir, f"{key}-{'-'.join(modalities)}") if cache_dir else None
    if cache is not None:
        stored = cache.load(case_id, fingerprint, ("names", "values"))
        if stored is not None:
            return [str(n) for n in stored["names"]], stored["values"]
    names, values = case_radiomics(case_dir, modalities)
    if cache is not None:
        cache.save(case_id, fingerprint, {"names": np.array(names), "values": values})
    return names, values


def cohort_radiomics(case_dirs: Sequence[Path], modalities: Sequence[str], cache_dir: Path | None,
                     workers: int = 1, progress: Callable[[int, int], None] | None = None) -> tuple[list[str], np.ndarray]:
    """Feature matrix (patients x features) of a cohort, cached per case, computed in ``workers`` processes."""
    key = settings_key()
    jobs = [(Path(d), tuple(modalities), cache_dir, key) for d in case_dirs]
    rows: list[tuple[list[str], np.ndarray]] = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for row in pool.map(_cached_case, jobs):
                rows.append(row)
                if progress:
                    progress(len(rows), len(jobs))
    else:
        for job in jobs:
            rows.append(_cached_case(job))
            if progress:
                progress(len(rows), len(jobs))
    names = rows[0][0]
    for (row_names, _), case_dir in zip(rows, case_dirs):
        if row_names != names:
            raise InputError(case_dir, "gives a different radiomics feature list than the first case",
                             "Check that every case has the same modalities and a non-empty mask")
    return names, np.stack([values for _, values in rows])
