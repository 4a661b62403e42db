"""Benchmark: DLR feature extraction + Fisher vector encoding per case vs pyradiomics per case on
the same masks, and our Fisher vector vs ``skimage.feature.fisher_vector`` on the same
descriptors and GMM. Full-size phantom cases, the shipped FLAIR+T1c network, CPU; ratios are
measured side by side in this run.

The Fisher vector comparison is the pipeline's use: a GMM fitted (``FisherVectorEncoder``, float64)
on the other cases' descriptors encodes one case's float32 descriptors. skimage runs on that GMM
with the descriptors in float64 (its float64 path, the parity reference), on the same GMM cast
to float32 (skimage then computes in float32, faster but ~1e-5 off the exact vector), and on the
descriptors and GMM exactly as the pipeline holds them (float32 descriptors, float64 GMM: NumPy
then mixes types, skimage's slowest case).

    python Testing/Benchmarks/bench_dlr.py [--threads 2] [--cases 3] [--out results/dlr.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from skimage.feature import fisher_vector as skimage_fisher_vector
from sklearn.mixture import GaussianMixture

from IDHPredictorLib.dlr.descriptors import DescriptorOptions, deep_descriptors
from IDHPredictorLib.dlr.fisher import FisherVectorEncoder, MixtureTables, default_threads, fisher_vector
from IDHPredictorLib.dlr.radiomics import case_radiomics
from IDHPredictorLib.io.case import read_case
from IDHPredictorLib.phantom.cohort import PhantomOptions, case_id, generate_cohort
from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS, load_model

REPEATS = 30


def _timed(repeats: int, function) -> tuple[float, float]:
    """Best and median wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def _sklearn_gmm(encoder: FisherVectorEncoder, dtype: type) -> GaussianMixture:
    """The encoder's GMM as the fitted ``GaussianMixture`` skimage needs, its arrays in ``dtype``."""
    gmm = GaussianMixture(len(encoder.weights_), covariance_type="diag")
    gmm.weights_, gmm.means_, gmm.covariances_ = (a.astype(dtype) for a in (encoder.weights_, encoder.means_, encoder.variances_))
    gmm.precisions_cholesky_ = 1.0 / np.sqrt(gmm.covariances_)
    gmm.precisions_ = 1.0 / gmm.covariances_
    gmm.converged_, gmm.n_features_in_ = True, encoder.means_.shape[1]
    return gmm


def _vlfeat_layout(vector: np.ndarray, components: int) -> np.ndarray:
    """skimage's vector without its K weight terms, renormalised, variance block negated."""
    vector = vector[components:] / np.linalg.norm(vector[components:])
    vector[vector.size // 2:] *= -1
    return vector


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dlr.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(DEFAULT_MODELS / "segmentation-flair-t1ce")
    options = DescriptorOptions()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cohort = generate_cohort(Path(tmp) / "c", PhantomOptions(cases=args.cases, seed=78, size="full", mix="li"), workers=2)
        cases = []
        for index in range(args.cases):
            folder = cohort / case_id(index)
            case = read_case(folder, model.modalities, dsc=False)
            start = time.perf_counter()
            descriptors = deep_descriptors(model.network, model.modalities, case, case.labels, ("conv6",), options)["conv6"]
            extraction = time.perf_counter() - start
            start = time.perf_counter()
            names = [n for modality in model.modalities for n in case_radiomics(folder, modality)[0]]
            radiomics = time.perf_counter() - start
            cases.append(descriptors)
            rows.append({"case": folder.name, "descriptors": len(descriptors), "extraction_s": extraction,
                         "radiomics_s": radiomics, "radiomics_features": len(names)})
    # the GMM is fitted once per training fold, not per case (not timed): here on the other cases
    encoder = FisherVectorEncoder().fit(cases[1:])
    mixture = MixtureTables.from_gmm(encoder.weights_, encoder.means_, encoder.variances_)
    start = time.perf_counter()
    fisher_vector(cases[0], mixture)
    first_call = time.perf_counter() - start  # numba's compiled code loaded from its cache (or compiled)
    for row, descriptors in zip(rows, cases):
        row["encoding_s"] = _timed(5, partial(fisher_vector, descriptors, mixture))[0]
        row["dlr_total_s"] = row["extraction_s"] + row["encoding_s"]
    sample = cases[0]
    gmm64, gmm32 = _sklearn_gmm(encoder, np.float64), _sklearn_gmm(encoder, np.float32)
    sample64 = sample.astype(np.float64)
    ours, ours_median = _timed(REPEATS, lambda: fisher_vector(sample, mixture))
    theirs, theirs_median = _timed(REPEATS, lambda: skimage_fisher_vector(sample64, gmm64, improved=True))
    theirs32, theirs32_median = _timed(REPEATS, lambda: skimage_fisher_vector(sample, gmm32, improved=True))
    theirs_mixed, theirs_mixed_median = _timed(REPEATS, lambda: skimage_fisher_vector(sample, gmm64, improved=True))
    mine = fisher_vector(sample, mixture)
    error = _relative_error(mine, _vlfeat_layout(skimage_fisher_vector(sample64, gmm64, improved=True), gmm64.n_components))
    error32 = _relative_error(mine, _vlfeat_layout(skimage_fisher_vector(sample, gmm32, improved=True), gmm32.n_components))

    dlr = float(np.mean([r["dlr_total_s"] for r in rows]))
    radiomics = float(np.mean([r["radiomics_s"] for r in rows]))
    results = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} torch threads, "
                          f"torch {torch.__version__}", "options": options.as_dict(), "cases": rows,
               "dlr_s_per_case": dlr, "radiomics_s_per_case": radiomics, "radiomics_over_dlr": radiomics / dlr,
               "fisher_vector": {"descriptors": int(len(sample)), "repeats": REPEATS, "threads": default_threads(),
                                 "ours_s": ours, "ours_median_s": ours_median, "first_call_s": first_call,
                                 "skimage_s": theirs, "skimage_median_s": theirs_median,
                                 "skimage_over_ours": theirs / ours, "skimage_over_ours_median": theirs_median / ours_median,
                                 "relative_difference": error,
                                 "skimage_float32_s": theirs32, "skimage_float32_median_s": theirs32_median,
                                 "skimage_float32_over_ours": theirs32 / ours, "relative_difference_float32": error32,
                                 "skimage_as_stored_s": theirs_mixed, "skimage_as_stored_median_s": theirs_mixed_median,
                                 "skimage_as_stored_over_ours": theirs_mixed / ours}}
    print(f"machine: {results['machine']}")
    print("| case | descriptors | CNN descriptors s | Fisher vector s | DLR total s | pyradiomics s (features) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['descriptors']} | {r['extraction_s']:.2f} | {r['encoding_s']:.3f} | "
              f"{r['dlr_total_s']:.2f} | {r['radiomics_s']:.1f} ({r['radiomics_features']}) |")
    print(f"DLR {dlr:.2f} s/case, pyradiomics {radiomics:.1f} s/case: pyradiomics / DLR = {radiomics / dlr:.1f}x")
    print(f"Fisher vector of {len(sample)} x 128 descriptors, K=64, GMM fitted on the other cases "
          f"({REPEATS} runs each, best / median; {default_threads()} threads; first call {first_call * 1000:.0f} ms):")
    print(f"  ours {ours * 1000:.2f} / {ours_median * 1000:.2f} ms; skimage float64 {theirs * 1000:.1f} / "
          f"{theirs_median * 1000:.1f} ms: skimage / ours = {theirs / ours:.1f}x / {theirs_median / ours_median:.1f}x "
          f"(relative difference {error:.1e})")
    print(f"  skimage on the GMM cast to float32 {theirs32 * 1000:.1f} / {theirs32_median * 1000:.1f} ms: "
          f"{theirs32 / ours:.1f}x / {theirs32_median / ours_median:.1f}x (relative difference {error32:.1e})")
    print(f"  skimage on the descriptors and GMM as the pipeline holds them (float32, float64) {theirs_mixed * 1000:.1f} / "
          f"{theirs_mixed_median * 1000:.1f} ms: {theirs_mixed / ours:.1f}x / {theirs_mixed_median / ours_median:.1f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
