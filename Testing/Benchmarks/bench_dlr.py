"""Benchmark: DLR feature extraction + Fisher vector encoding per case vs pyradiomics per case on
the same masks, and our Fisher vector vs ``skimage.feature.fisher_vector`` on the same
descriptors and GMM. Full-size phantom cases, the shipped FLAIR+T1c network, CPU; ratios are
measured side by side in this run.

    python Testing/Benchmarks/bench_dlr.py [--threads 2] [--cases 3] [--out results/dlr.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage.feature import fisher_vector
from sklearn.mixture import GaussianMixture

from IDHPredictorLib.dlr.descriptors import DescriptorOptions, deep_descriptors
from IDHPredictorLib.dlr.fisher import improved_fisher_vector
from IDHPredictorLib.dlr.radiomics import case_radiomics
from IDHPredictorLib.io.case import read_case
from IDHPredictorLib.phantom.cohort import PhantomOptions, case_id, generate_cohort
from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS, load_model


def _best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


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
        gmm = None
        for index in range(args.cases):
            folder = cohort / case_id(index)
            case = read_case(folder, model.modalities, dsc=False)
            start = time.perf_counter()
            descriptors = deep_descriptors(model.network, model.modalities, case, case.labels, ("conv6",), options)["conv6"]
            extraction = time.perf_counter() - start
            if gmm is None:  # the GMM is fitted once per training fold, not per case: not timed here
                gmm = GaussianMixture(64, covariance_type="diag", random_state=0, max_iter=50).fit(descriptors)
            start = time.perf_counter()
            improved_fisher_vector(descriptors, gmm.weights_, gmm.means_, gmm.covariances_)
            encoding = time.perf_counter() - start
            start = time.perf_counter()
            names = [n for modality in model.modalities for n in case_radiomics(folder, modality)[0]]
            radiomics = time.perf_counter() - start
            rows.append({"case": folder.name, "descriptors": len(descriptors), "extraction_s": extraction,
                         "encoding_s": encoding, "dlr_total_s": extraction + encoding, "radiomics_s": radiomics,
                         "radiomics_features": len(names)})
        sample = descriptors
        ours = _best_of(5, lambda: improved_fisher_vector(sample, gmm.weights_, gmm.means_, gmm.covariances_))
        theirs = _best_of(5, lambda: fisher_vector(sample, gmm, improved=True))
        mine = improved_fisher_vector(sample, gmm.weights_, gmm.means_, gmm.covariances_)
        reference = fisher_vector(sample, gmm, improved=True)[64:]
        reference /= np.linalg.norm(reference)
        reference[reference.size // 2:] *= -1
        error = float(np.linalg.norm(mine - reference) / np.linalg.norm(reference))

    dlr = float(np.mean([r["dlr_total_s"] for r in rows]))
    radiomics = float(np.mean([r["radiomics_s"] for r in rows]))
    results = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} torch threads, "
                          f"torch {torch.__version__}", "options": options.as_dict(), "cases": rows,
               "dlr_s_per_case": dlr, "radiomics_s_per_case": radiomics, "radiomics_over_dlr": radiomics / dlr,
               "fisher_vector": {"descriptors": int(len(sample)), "ours_s": ours, "skimage_s": theirs,
                                 "skimage_over_ours": theirs / ours, "relative_difference": error}}
    print(f"machine: {results['machine']}")
    print("| case | descriptors | CNN descriptors s | Fisher vector s | DLR total s | pyradiomics s (features) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['descriptors']} | {r['extraction_s']:.2f} | {r['encoding_s']:.3f} | "
              f"{r['dlr_total_s']:.2f} | {r['radiomics_s']:.1f} ({r['radiomics_features']}) |")
    print(f"DLR {dlr:.2f} s/case, pyradiomics {radiomics:.1f} s/case: pyradiomics / DLR = {radiomics / dlr:.1f}x")
    print(f"Fisher vector of {len(sample)} x 128 descriptors, K=64: ours {ours * 1000:.1f} ms, skimage "
          f"{theirs * 1000:.1f} ms: skimage / ours = {theirs / ours:.1f}x (relative difference {error:.1e})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
