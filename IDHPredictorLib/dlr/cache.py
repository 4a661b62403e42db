"""On-disk cache of deep descriptors, keyed by model weights + sampling options, by the version of
the code that computes them and by each case's input files, so that re-running an evaluation
does not re-run the CNN and a change to the extraction code never serves stale descriptors."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.case import read_case
from ..segmentation import data as network_data
from ..segmentation import network as network_code
from ..segmentation.model_bundle import WEIGHTS, SegmentationModel
from . import descriptors as descriptor_code
from .descriptors import DescriptorOptions, deep_descriptors

log = logging.getLogger(__name__)


def model_key(model: SegmentationModel, model_folder: Path, options: DescriptorOptions) -> str:
    """Hash of the weight file's bytes, the modalities and the sampling options."""
    digest = hashlib.sha256((Path(model_folder) / WEIGHTS).read_bytes())
    digest.update(json.dumps({"modalities": list(model.modalities), **options.as_dict()}, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def code_version(*modules: ModuleType) -> str:
    """Hash of the source files of ``modules``: any edit to the code that computes what is cached
    moves the cache to a new folder."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


# The code whose output the deep-descriptor cache holds: sampling, network input, network.
DESCRIPTOR_CODE = (descriptor_code, network_data, network_code)


def files_fingerprint(paths: Sequence[Path]) -> str:
    """Name, size and modification time of each input file (or DICOM folder): changes on any edit."""
    parts = []
    for path in sorted(Path(p) for p in paths):
        stat = path.stat()
        parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


class DescriptorCache:
    """``<folder>/<key>-code<code version>/<case id>.npz`` holding one array per layer and the
    inputs' fingerprint."""

    def __init__(self, folder: str | Path, key: str, code: str) -> None:
        self.folder = Path(folder) / f"{key}-code{code}"

    def load(self, case_id: str, fingerprint: str, layers: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The cached descriptors of ``layers``, or None when absent or made from other inputs."""
        path = self.folder / f"{case_id}.npz"
        if not path.exists():
            return None
        with np.load(path) as stored:
            if str(stored["fingerprint"]) != fingerprint or not all(layer in stored for layer in layers):
                return None
            return {layer: stored[layer] for layer in layers}

    def save(self, case_id: str, fingerprint: str, descriptors: dict[str, np.ndarray]) -> None:
        """Write (atomically) the descriptors of one case."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / f"{case_id}.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, fingerprint=np.array(fingerprint), **descriptors)


def case_descriptors(model: SegmentationModel, model_folder: Path, case_dir: Path, layers: Sequence[str],
                     options: DescriptorOptions, cache: DescriptorCache | None) -> dict[str, np.ndarray]:
    """Descriptors of one labelled case folder (its ``_seg`` is the tumour mask), from cache if valid."""
    case = read_case(case_dir, model.modalities, labels=True, dsc=False)
    if case.labels is None:
        raise InputError(case_dir, "has no tumour mask (<id>_seg.nii.gz)",
                         f"Segment it first: idh-predictor segment {case_dir} --out {case_dir}/{case.case_id}_seg.nii.gz")
    inputs = [case.files[m] for m in model.modalities] + [case.files["seg"]]
    fingerprint = files_fingerprint(inputs)
    if cache is not None:
        cached = cache.load(case.case_id, fingerprint, layers)
        if cached is not None:
            return cached
    descriptors = deep_descriptors(model.network, model.modalities, case, case.labels, tuple(layers), options)
    if cache is not None:
        cache.save(case.case_id, fingerprint, descriptors)
    return descriptors


def cohort_descriptors(model: SegmentationModel, model_folder: Path, case_dirs: Sequence[Path],
                       layers: Sequence[str], options: DescriptorOptions, cache_dir: Path | None,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, list[np.ndarray]]:
    """Descriptors of every case, per layer, in ``case_dirs`` order."""
    cache = DescriptorCache(cache_dir, model_key(model, model_folder, options), code_version(*DESCRIPTOR_CODE)) if cache_dir else None
    result: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    for done, case_dir in enumerate(case_dirs):
        for layer, descriptors in case_descriptors(model, model_folder, case_dir, layers, options, cache).items():
            result[layer].append(descriptors)
        if progress:
            progress(done + 1, len(case_dirs))
    return result
