"""The paper's "normal radiomics" baseline: hand-crafted intensity, shape, texture and wavelet
features of the same whole-tumour masks, computed by pyradiomics (the ``pyradiomics-bhklab``
wheel, an optional extra: ``pip install idhpredictor[radiomics]``)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.case import read_case
from .cache import DescriptorCache, cached_cohort, case_fingerprint, code_version
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
                         "pip install pyradiomics-bhklab, or run idh-predictor dlr with --no-radiomics") from error
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


def case_radiomics(case_dir: Path, modality: str) -> tuple[list[str], np.ndarray]:
    """Feature names (``<modality>_<image type>_<class>_<feature>``) and values of one modality of a
    labelled case (shape features included; the cohort matrix keeps them once)."""
    case = read_case(case_dir, (modality,), labels=True, dsc=False)
    if case.labels is None:
        raise InputError(case_dir, "has no tumour mask (<id>_seg.nii.gz)", "Segment the case first")
    extractor, _ = _extractor()
    names, values = [], []
    for name, value in extractor.execute(case.images[modality], tumour_mask(case.labels)).items():
        if name.startswith("diagnostics_"):
            continue
        names.append(f"{modality}_{name}")
        values.append(float(value))
    return names, np.asarray(values, dtype=np.float64)


def _case_modalities(case_dir: Path, modalities: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every modality's features of one case, as arrays for the cache; a task of ``cached_cohort``."""
    result = {}
    for modality in modalities:
        names, values = case_radiomics(case_dir, modality)
        result[f"{modality}_names"], result[f"{modality}_values"] = np.array(names), values
    return result


def cohort_radiomics(case_dirs: Sequence[Path], modalities: Sequence[str], cache_dir: Path | None,
                     workers: int = 1, progress: Callable[[int, int], None] | None = None) -> tuple[list[str], np.ndarray]:
    """Feature matrix (patients x features) of a cohort: each modality's features (shape once),
    cached per case, computed in ``workers`` processes (or on the cluster)."""
    modalities = tuple(modalities)
    cache = DescriptorCache(cache_dir, f"{settings_key()}-{'-'.join(modalities)}", code_version(sys.modules[__name__])) \
        if cache_dir else None
    fingerprints = [case_fingerprint(d, (*modalities, "seg")) for d in case_dirs]
    fields = [f"{m}_{part}" for m in modalities for part in ("names", "values")]
    per_case = cached_cohort(cache, case_dirs, fingerprints, fields, _case_modalities,
                             [(Path(d), modalities) for d in case_dirs], "radiomics features", workers, progress)
    results = [([str(n) for n in case[f"{m}_names"]], case[f"{m}_values"]) for case in per_case for m in modalities]
    names: list[str] | None = None
    rows = []
    for index, case_dir in enumerate(case_dirs):
        parts = results[index * len(modalities):(index + 1) * len(modalities)]
        keep = [[not (m > 0 and n.split("_", 1)[1].startswith("original_shape")) for n in part[0]]
                for m, part in enumerate(parts)]
        case_names = [n for part, mask in zip(parts, keep) for n, k in zip(part[0], mask) if k]
        if names is None:
            names = case_names
        elif case_names != names:
            raise InputError(case_dir, "gives a different radiomics feature list than the first case",
                             "Check that every case has the same modalities and a non-empty mask")
        rows.append(np.concatenate([part[1][np.array(mask)] for part, mask in zip(parts, keep)]))
    return names, np.stack(rows)
