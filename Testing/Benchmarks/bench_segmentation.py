"""Benchmark: dense slice inference vs naive patch-per-voxel inference (the paper's approach),
on one full-size 4-channel phantom case, CPU (and CUDA when present). Prints a table and
writes JSON; times are wall-clock on this machine, the ratio is measured side by side.

    python Testing/Benchmarks/bench_segmentation.py [--threads 2] [--sample 2000] [--out results/segmentation.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from IDHPredictorLib.io.case import read_case
from IDHPredictorLib.phantom.cohort import PhantomOptions, case_id, generate_cohort
from IDHPredictorLib.segmentation.data import extract_patches, network_input, pad_for_patches
from IDHPredictorLib.segmentation.inference import segment_case
from IDHPredictorLib.segmentation.network import PATCH, Architecture, SegmentationCNN

MODALITIES = ("t1", "t1ce", "t2", "flair")


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sample", type=int, default=2000, help="voxels timed one patch at a time")
    parser.add_argument("--fc-width", type=int, default=512)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "segmentation.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        # generated in a worker process, so that the peak memory below is that of reading + inference
        cohort = generate_cohort(Path(tmp) / "c", PhantomOptions(cases=1, seed=77, size="full"), workers=2)
        case = read_case(cohort / case_id(0), modalities=MODALITIES, dsc=False)
    network = SegmentationCNN(Architecture(len(MODALITIES), args.fc_width)).eval()
    memory_before = peak_memory_mb()

    results = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} torch threads, "
                          f"torch {torch.__version__}", "fc_width": args.fc_width, "case_size": case.reference.GetSize()}
    segment_case(network, MODALITIES, case)  # warm-up (allocator, MKL-DNN kernels)
    start = time.perf_counter()
    segment_case(network, MODALITIES, case)
    results["dense_cpu_s"] = time.perf_counter() - start
    results["dense_peak_memory_mb"] = peak_memory_mb()
    results["memory_before_inference_mb"] = memory_before

    data = network_input(case, MODALITIES, with_labels=False)
    padded = pad_for_patches(data.channels)
    brain_voxels = np.argwhere(data.brain)
    sample = brain_voxels[np.random.default_rng(0).choice(len(brain_voxels), args.sample, replace=False)]
    with torch.no_grad():
        start = time.perf_counter()
        for centre in sample:  # one patch per voxel, as a patch classifier is usually applied
            network(torch.from_numpy(extract_patches(padded, centre[None], PATCH, PATCH // 2)))
        per_voxel = (time.perf_counter() - start) / args.sample
    results["naive_cpu_s_per_voxel"] = per_voxel
    results["brain_voxels"] = int(len(brain_voxels))
    results["naive_cpu_s_extrapolated"] = per_voxel * len(brain_voxels)
    results["dense_speedup"] = results["naive_cpu_s_extrapolated"] / results["dense_cpu_s"]

    if torch.cuda.is_available():
        gpu = network.cuda()
        segment_case(gpu, MODALITIES, case)
        torch.cuda.synchronize()
        start = time.perf_counter()
        segment_case(gpu, MODALITIES, case)
        torch.cuda.synchronize()
        results["dense_gpu_s"] = time.perf_counter() - start
        results["gpu"] = torch.cuda.get_device_name()

    print(f"segmentation benchmark ({results['machine']}), case {results['case_size']}, 4 channels, "
          f"FC width {args.fc_width}")
    print(f"  dense inference (CPU)            {results['dense_cpu_s']:8.1f} s/case")
    print(f"  naive patch-per-voxel (CPU, est.) {results['naive_cpu_s_extrapolated']:8.0f} s/case "
          f"({per_voxel * 1e3:.2f} ms/voxel x {len(brain_voxels)} brain voxels)")
    print(f"  ratio naive / dense              {results['dense_speedup']:8.0f} x")
    print(f"  peak memory                      {results['dense_peak_memory_mb']:8.0f} MB")
    if "dense_gpu_s" in results:
        print(f"  dense inference (GPU {results['gpu']}) {results['dense_gpu_s']:.2f} s/case")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
