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

from ..compute import all_succeeded, map_cases
from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.case import find_case_files, read_case
from ..segmentation import data as network_data
from ..segmentation import network as network_code
from ..segmentation.inference import loaded_model
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


def case_fingerprint(case_dir: Path, roles: Sequence[str]) -> str:
    """``files_fingerprint`` of the files a case has for ``roles`` (e.g. modalities and ``seg``)."""
    _, files = find_case_files(case_dir)
    return files_fingerprint([files[role] for role in roles if role in files])


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


def cached_cohort(cache: DescriptorCache | None, case_dirs: Sequence[Path], fingerprints: Sequence[str],
                  fields: Sequence[str], compute: Callable[..., dict[str, np.ndarray]], arguments: Sequence[tuple],
                  what: str, workers: int = 1, progress: Callable[[int, int], None] | None = None) -> list[dict[str, np.ndarray]]:
    """Per case, ``fields`` from the cache when its inputs are unchanged, else ``compute(*arguments[i])``
    (run by ``compute.map_cases``: here, in local processes or on the cluster); this process is the
    one writer of the cache. A failing case is reported with the others' results kept in the cache."""
    case_ids = [find_case_files(d)[0] for d in case_dirs]
    stored = [cache.load(c, f, fields) if cache else None for c, f in zip(case_ids, fingerprints)]
    missing = [i for i, entry in enumerate(stored) if entry is None]
    offset = len(case_dirs) - len(missing)

    def keep(position: int, result: dict[str, np.ndarray]) -> None:  # cached as each case arrives
        if cache is not None:
            cache.save(case_ids[missing[position]], fingerprints[missing[position]], result)

    computed = map_cases(compute, [arguments[i] for i in missing], [case_ids[i] for i in missing], workers,
                         (lambda done, total: progress(offset + done, len(case_dirs))) if progress else None, keep)
    for i, result in zip(missing, computed):
        stored[i] = result
    if progress and not missing:
        progress(len(case_dirs), len(case_dirs))
    return all_succeeded(stored, what)


def case_descriptors(model_folder: str, case_dir: Path, layers: tuple[str, ...],
                     options: DescriptorOptions) -> dict[str, np.ndarray]:
    """Descriptors of one labelled case folder (its ``_seg`` is the tumour mask); a task of ``cached_cohort``.
    Always on CPU in float32, as ``predict`` computes them: the cache, a DLR bundle and its use on a
    new case then see the same numbers whichever worker (with or without a GPU) computed them."""
    model = loaded_model(model_folder, "cpu")
    case = read_case(case_dir, model.modalities, labels=True, dsc=False)
    if case.labels is None:
        raise InputError(case_dir, "has no tumour mask (<id>_seg.nii.gz)",
                         f"Segment it first: idh-predictor segment {case_dir} --out {case_dir}/{case.case_id}_seg.nii.gz")
    return deep_descriptors(model.network, model.modalities, case, case.labels, layers, options)


def cohort_descriptors(model: SegmentationModel, model_folder: Path, case_dirs: Sequence[Path],
                       layers: Sequence[str], options: DescriptorOptions, cache_dir: Path | None,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, list[np.ndarray]]:
    """Descriptors of every case, per layer, in ``case_dirs`` order (one case at a time here, as the
    CNN uses every core; one case per worker on a cluster)."""
    cache = DescriptorCache(cache_dir, model_key(model, model_folder, options), code_version(*DESCRIPTOR_CODE)) if cache_dir else None
    fingerprints = [case_fingerprint(d, (*model.modalities, "seg")) for d in case_dirs]
    folder = str(Path(model_folder).resolve())
    per_case = cached_cohort(cache, case_dirs, fingerprints, layers, case_descriptors,
                             [(folder, Path(d), tuple(layers), options) for d in case_dirs], "deep descriptors",
                             progress=progress)
    return {layer: [descriptors[layer] for descriptors in per_case] for layer in layers}
