"""Benchmark: the cohort on a Dask cluster (a real scheduler and worker processes on 127.0.0.1),
side by side in one run.

* Cohort throughput, one batch ``segment`` of the same phantom cohort: in this process, then on
  a cluster with 1 and with 2 one-thread workers (ratio 2 / 1 workers).
* Memory per worker: each worker process's peak resident set after the run.
* Scheduler overhead per task: N empty tasks through ``compute.map_cases`` on the cluster vs here.
* A worked plan for a 10,000-patient cohort on N nodes, from these numbers and the per-case
  costs the other benchmarks recorded (results/scaling.json, results/dlr.json): time, memory,
  storage and network.

    python Testing/Benchmarks/bench_cluster.py [--cases 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Python"))

from dask_cluster import LocalDaskCluster  # noqa: E402

from IDHPredictorLib import compute  # noqa: E402
from IDHPredictorLib.batch import run_batch  # noqa: E402
from IDHPredictorLib.phantom.cohort import PhantomOptions, generate_cohort  # noqa: E402

SEGMENT = {"model": None, "preprocess": "auto", "postprocess": True, "device": "auto"}
PATIENTS = 10_000


def _peak_rss_mb() -> float:
    """(Runs on a worker) this process's peak resident memory in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _nothing(index: int) -> int:
    return index


def _timed_batch(cohort: Path, out: Path) -> float:
    started = time.perf_counter()
    summary = run_batch("segment", cohort, out, SEGMENT)
    if summary.failures or len(summary.computed) != len(list(cohort.glob("PHANTOM-*"))):
        raise SystemExit(f"the batch did not complete: {summary.as_dict()}")
    return time.perf_counter() - started


def throughput(cohort: Path, scratch: Path) -> dict:
    """Seconds for the batch here and on 1 and 2 workers, first with fresh processes (imports, model
    loading), then warm as on a long run; each worker's peak memory."""
    row = {"here_cold_s": _timed_batch(cohort, scratch / "here-cold"), "here_s": _timed_batch(cohort, scratch / "here")}
    for workers in (1, 2):
        with LocalDaskCluster(scratch / f"dask-{workers}", workers=workers) as cluster:
            with compute.use_scheduler(cluster.address, [cohort, scratch]):
                row[f"workers_{workers}_cold_s"] = _timed_batch(cohort, scratch / f"cold-{workers}")  # imports, model load
                row[f"workers_{workers}_s"] = _timed_batch(cohort, scratch / f"out-{workers}")
                row[f"workers_{workers}_peak_mb"] = sorted(compute._client.run(_peak_rss_mb).values())
            if workers == 2:
                row["overhead"] = scheduler_overhead(cluster.address, scratch)
    return row


def scheduler_overhead(address: str, scratch: Path, tasks: int = 400) -> dict:
    """Per-task cost of the cluster: empty tasks through map_cases there and here."""
    arguments, labels = [(i,) for i in range(tasks)], [str(i) for i in range(tasks)]
    started = time.perf_counter()
    compute.map_cases(_nothing, arguments, labels)
    here = (time.perf_counter() - started) / tasks
    with compute.use_scheduler(address, [scratch]):
        compute.map_cases(_nothing, arguments[:20], labels[:20])  # warm: the function reaches the workers
        started = time.perf_counter()
        results = compute.map_cases(_nothing, arguments, labels)
        cluster = (time.perf_counter() - started) / tasks
    assert results == list(range(tasks))
    return {"tasks": tasks, "cluster_ms": cluster * 1000, "here_ms": here * 1000}


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def plan(measured: dict, full_case_mb: float, nodes: tuple[int, ...] = (1, 10, 50)) -> list[str]:
    """10,000 patients: wall time per stage on N nodes like this machine, from the per-case costs
    the other benchmarks measured (one 2-thread process) and the node speed measured here."""
    scaling = json.loads((HERE / "results" / "scaling.json").read_text())
    dlr = json.loads((HERE / "results" / "dlr.json").read_text())
    full = next(r for r in scaling["image_size"] if r["size"] == "full")
    per_case = {"segmentation (full size)": full["segmentation_s"], "deep descriptors (full size)": full["descriptors_s"],
                "pyradiomics features": dlr["radiomics_s_per_case"]}
    node_speed = measured["here_s"] / measured["workers_2_s"]  # a node's 2 workers vs one 2-thread process
    overhead_s = measured["overhead"]["cluster_ms"] / 1000  # serial, at the scheduler
    peak = max(measured["workers_2_peak_mb"])
    lines = [f"{PATIENTS:,}-patient plan (per node: 2 cores and 2 one-thread workers, as measured here: a node does "
             f"{node_speed:.2f}x the cases/s of one 2-thread process; + {overhead_s * 1000:.1f} ms/task at the scheduler)"]
    lines.append("| stage | s/case (one 2-thread process) | " + " | ".join(f"{n} node{'s' * (n > 1)} h" for n in nodes) + " |")
    lines.append("|---|---|" + "---|" * len(nodes))
    for stage, seconds in per_case.items():
        cells = [f"{(PATIENTS * seconds / (node_speed * n) + PATIENTS * overhead_s) / 3600:.1f}" for n in nodes]
        lines.append(f"| {stage} | {seconds:.1f} | " + " | ".join(cells) + " |")
    fit_160 = next(r for r in scaling["cohort_size"] if r["patients"] == 160)["dlr_fit_s"]
    fit_10k = fit_160 * PATIENTS / 160  # the fit grows about linearly with the patients (scaling.json: 10 -> 160)
    lines.append(f"DLR model fit on {PATIENTS} patients ~{fit_10k / 60:.0f} min (linear from {fit_160:.0f} s at 160): "
                 f"LOOCV would be {PATIENTS} such fits (~{PATIENTS * fit_10k / 86400 / 365:.1f} CPU-years), so use "
                 f"--validation kfold: 5 folds x 5 repeats = 25 fits, {25 * fit_10k / 3600:.1f} CPU-h, "
                 f"one fold per worker ({25 * fit_10k / 3600 / min(25, 2 * nodes[-1]):.1f} h on {nodes[-1]} nodes, "
                 f"as 25 folds fill 25 workers); each fold fit holds its training patients' descriptors, "
                 f"{PATIENTS * 0.8 * 8192 * 128 * 4 / 1e9:.0f} GB at 8,192 x 128 float32 per patient: fold workers need "
                 f"large-memory nodes, or fewer descriptors per patient")
    lines.append(f"memory: {peak:.0f} MB peak per worker on small cases here; a full-size case peaks at ~2.2 GB while "
                 f"simulated and ~1.1 GB while segmented (bench_segmentation), so give each worker 3 GB "
                 f"(--memory-limit 3GB): 6 GB per 2-core node")
    descriptors_mb = 8192 * 128 * 4 / 1e6
    lines.append(f"storage: inputs {full_case_mb:.0f} MB per full-size phantom case (4 series + DSC + labels) -> "
                 f"{PATIENTS * full_case_mb / 1e6:.2f} TB; outputs per case ~1 MB labels + {descriptors_mb:.1f} MB "
                 f"descriptor cache -> {PATIENTS * (1 + descriptors_mb) / 1e3:.0f} GB")
    lines.append(f"network: each task reads its case from the shared file system ({full_case_mb:.0f} MB) and returns "
                 f"its descriptors to the one writer ({descriptors_mb:.1f} MB): {PATIENTS * (full_case_mb + descriptors_mb) / 1e6:.2f} TB "
                 f"in all, spread over the run")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads here, workers 1 thread each, "
          f"torch {torch.__version__}")
    scratch = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        cohort = generate_cohort(scratch / "cohort", PhantomOptions(cases=args.cases, seed=3, size="small"), workers=2)
        full = generate_cohort(scratch / "full", PhantomOptions(cases=1, seed=3, size="full"), workers=1)
        full_case_mb = folder_mb(next(full.glob("PHANTOM-*")))
        measured = throughput(cohort, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    n = args.cases
    print(f"batch segment of {n} small phantom cases (2.5 mm, 96 x 96 x 62):")
    print(f"  here (one process, {torch.get_num_threads()} threads)   {measured['here_s']:6.1f} s warm  ({n / measured['here_s']:.2f} "
          f"cases/s; first run {measured['here_cold_s']:.1f} s)")
    for workers in (1, 2):
        seconds = measured[f"workers_{workers}_s"]
        peaks = ", ".join(f"{mb:.0f}" for mb in measured[f"workers_{workers}_peak_mb"])
        print(f"  Dask, {workers} worker{'s' * (workers > 1)}               {seconds:6.1f} s warm  ({n / seconds:.2f} cases/s; "
              f"first run {measured[f'workers_{workers}_cold_s']:.1f} s; peak memory per worker {peaks} MB)")
    print(f"  warm throughput, 2 workers / 1 worker: {measured['workers_1_s'] / measured['workers_2_s']:.2f}x; "
          f"2 workers / here: {measured['here_s'] / measured['workers_2_s']:.2f}x")
    overhead = measured["overhead"]
    print(f"scheduler overhead: {overhead['cluster_ms']:.2f} ms per task on the cluster vs {overhead['here_ms']:.4f} ms here "
          f"({overhead['tasks']} empty tasks)")
    for line in plan(measured, full_case_mb):
        print(line)
    record = {**measured, "cases": n, "full_case_mb": full_case_mb}
    (HERE / "results" / "cluster.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
