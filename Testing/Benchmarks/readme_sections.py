"""Regenerate the README's "Results on the phantom cohort" and "Performance" sections from JSON.

    python Testing/Benchmarks/readme_sections.py [--demo DEMO_DIR/demo.json] [--fusion FUSION_DIR/report.json]
        [--deployment DEPLOYMENT_DIR/report.json]

``--demo`` first copies that run's demo.json to ``results/demo.json`` (the record the README
cites), ``--fusion`` an ``idh-predictor fusion`` report to ``results/fusion.json``,
``--deployment`` an ``idh-predictor validate-deployment`` report to ``results/deployment.json``; the benchmark
JSON files come from ``run_benchmarks.py``. Segmentation training times are
read from the shipped bundles' model.json (recorded when they were trained).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from IDHPredictorLib.demo_report import machine_text
from IDHPredictorLib.validation.permutation import verdict_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"


def _auc(result: dict) -> str:
    return _auc_cell(result["metrics"]["auc"])


def _auc_cell(auc: dict) -> str:
    if auc["value"] is None:
        return "n/a"
    return f"{auc['value']:.3f}" + ("" if auc["ci_low"] is None else f" ({auc['ci_low']:.2f}-{auc['ci_high']:.2f})")


def results_section(demo: dict) -> str:
    """Markdown summary of one demo run."""
    cohort, seg, timings = demo["cohort"], demo["segmentation"], demo["timings_s"]
    lines = [f"These are **simulated patients** (the digital phantom), not real ones: the numbers describe the methods on "
             f"the simulator. Run `{demo['command']}` on {demo['date']}, {machine_text(demo['machine'])}, "
             f"{timings['total'] / 60:.1f} min; the full report is `report.html` in its output folder.",
             "",
             f"* Cohort: {cohort['patients']} small (2.5 mm) patients, {cohort['mutant']} IDH-mutant, grades II-IV; "
             f"{cohort['full_size_patients']} new full-size patient{'' if cohort['full_size_patients'] == 1 else 's'} for segmentation.",
             f"* Segmentation Dice (default FLAIR + T1c bundle {seg['model']}, full-size): " + ", ".join(
                 f"{region.replace('_', ' ')} {v['mean']:.3f}" for region, v in seg["dice"].items()) + ".",
             "", "| Model | Validation (patients) | AUC (95% CI) |", "|---|---|---|"]
    for key in ("dlr_main", "dlr_temporal", "dlr_layers"):
        for result in demo["dlr"].get(key, []):
            lines.append(f"| {result['name']} | {result['section']} ({result['n_patients']}) | {_auc(result)} |")
    for result in demo["perfusion"]["results"]:
        lines.append(f"| {result['name']} | perfusion, {result['section']} ({result['n_patients']}) | {_auc(result)} |")
    lstm_cv = next(r for r in demo["perfusion"]["results"] if r["name"] == "Attention-LSTM" and r["validation"] == "cv")
    lines.append("")
    for name, test in (("DLR", demo["dlr"]["dlr_main"][0]["permutation_test"]), ("Perfusion LSTM", lstm_cv["permutation_test"])):
        lines.append(f"* {name} label-permutation test ({test['shuffles']} shuffles, {test['folds']}-fold CV): "
                     f"AUC {test['observed_auc']:.3f} with the true labels, {test['null_mean']:.3f} +- "
                     f"{test['null_sd'] or 0:.3f} under shuffled labels, p = {test['p_value']:.3f}; leakage check "
                     f"{verdict_text(test)}.")
    new = demo["new_patient"]
    lines += [f"* New patient {new['case_id']} (truth: {new['truth_idh']}): DLR p(mutant) = "
              f"{new['dlr']['idh_mutant_probability']:.2f}, perfusion p(mutant) = {new['perfusion']['idh_mutant_probability']:.2f}, "
              f"pattern {new['perfusion']['temporal_pattern']}" + (
                  f"; fused (shipped fusion bundle, {' + '.join(new['fusion']['inputs_used'])}) p(mutant) = "
                  f"{new['fusion']['idh_mutant_probability']:.2f}, prediction set at {new['fusion']['coverage']:.0%}: "
                  f"{new['fusion']['prediction_set']}" if new.get("fusion") else "") + ". All probabilities calibrated.",
              "* Stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items() if k != "total") + "."]
    return "\n".join(lines)


def _training_seconds(bundle: Path) -> float | None:
    record = json.loads((bundle / "model.json").read_text(encoding="utf-8"))
    history = record.get("training", {}).get("history") or []
    return history[-1].get("seconds") if history and isinstance(history[-1], dict) else None


def performance_section(results: Path = RESULTS) -> str:
    """Markdown summary of the latest benchmark run."""
    runner = json.loads((results / "runner.json").read_text(encoding="utf-8"))
    seg = json.loads((results / "segmentation.json").read_text(encoding="utf-8"))
    dlr = json.loads((results / "dlr.json").read_text(encoding="utf-8"))
    perf = json.loads((results / "perfusion.json").read_text(encoding="utf-8"))
    scaling = json.loads((results / "scaling.json").read_text(encoding="utf-8"))
    fv = dlr["fisher_vector"]
    lines = [f"`python Testing/Benchmarks/run_benchmarks.py` on {runner['date']} ({runner['machine']}; CPU only, no GPU was "
             "available); details in `Testing/Benchmarks/RESULTS.md`.", "",
             "| Step | Time | Side by side |", "|---|---|---|",
             f"| Segmentation, full-size case (dense) | {seg['dense_cpu_s']:.1f} s | naive patch-per-voxel {seg['dense_speedup']:.0f}x slower (est.) |",
             f"| DLR descriptors + Fisher vector | {dlr['dlr_s_per_case']:.2f} s/case | pyradiomics {dlr['radiomics_s_per_case']:.1f} s/case "
             f"({dlr['radiomics_over_dlr']:.1f}x) |",
             f"| Fisher vector, {fv['descriptors']} descriptors (best / median of {fv['repeats']}) | {fv['ours_s'] * 1000:.1f} / "
             f"{fv['ours_median_s'] * 1000:.1f} ms | skimage float64 {fv['skimage_s'] * 1000:.1f} / {fv['skimage_median_s'] * 1000:.1f} ms "
             f"({fv['skimage_over_ours']:.1f}x / {fv['skimage_over_ours_median']:.1f}x); skimage on the GMM cast to float32 "
             f"{fv['skimage_float32_s'] * 1000:.1f} ms ({fv['skimage_float32_over_ours']:.1f}x) |",
             f"| Perfusion analysis + prediction | {perf['mean_s_per_case']:.2f} s/case | |",
             f"| LSTM training, {perf['training_patients']} patients, {perf['epochs']} epochs | {perf['training_one_fold_s']:.1f} s | |"]
    raw_path = results / "raw_inputs.json"
    if raw_path.exists():  # written only where ../shared/realdata holds the raw case
        raw = json.loads(raw_path.read_text(encoding="utf-8"))
        (raw_name, raw_run), (ready_name, ready_run) = raw["runs"].items()
        steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in raw_run["steps_s"].items())
        lines.append(f"| Raw scans to tumour mask, real TCGA-FG-6692 {raw_name}, {raw.get('bundle', 'segmentation-flair-t1ce')} "
                     f"(bench_raw_inputs.py, {raw['date']}) | "
                     f"{raw_run['total_s']:.0f} s ({steps}) | {ready_name} {ready_run['total_s']:.0f} s |")
    cluster_path = results / "cluster.json"
    if cluster_path.exists():
        cluster = json.loads(cluster_path.read_text(encoding="utf-8"))
        lines.append(f"| Cohort segmentation on Dask, {cluster['cases']} small cases (bench_cluster.py) | 2 workers "
                     f"{cluster['workers_2_s']:.1f} s, 1 worker {cluster['workers_1_s']:.1f} s "
                     f"({cluster['workers_1_s'] / cluster['workers_2_s']:.2f}x) | one 2-thread process {cluster['here_s']:.1f} s; "
                     f"scheduler overhead {cluster['overhead']['cluster_ms']:.1f} ms/task |")
    for name in ("segmentation-flair-t1ce", "segmentation-flair"):
        seconds = _training_seconds(ROOT / "Resources" / "models" / name)
        if seconds is not None:
            lines.append(f"| Training {name} (recorded in its model.json) | {seconds / 60:.0f} min | |")
    lines += ["", "| Patients | DLR fit | DLR LOOCV (est.) | SVM LOOCV on Fisher vectors | LSTM training |", "|---|---|---|---|---|"]
    for row in scaling["cohort_size"]:
        lines.append(f"| {row['patients']} | {row['dlr_fit_s']:.1f} s | {row['dlr_loocv_s_est']:.0f} s | {row['svm_loocv_s']:.1f} s | "
                     f"{row['lstm_training_s']:.1f} s ({row['lstm_epochs']} epochs) |")
    small, full = scaling["image_size"]
    lines += ["", f"Image size: segmentation {small['segmentation_s']:.1f} s (small) vs {full['segmentation_s']:.1f} s (full), "
              f"descriptors {small['descriptors_s']:.1f} s vs {full['descriptors_s']:.1f} s.",
              "Peak memory per benchmark process: " + ", ".join(
                  f"{name.removeprefix('bench_')} {v['peak_memory_mb']} MB" for name, v in runner["benchmarks"].items()) + "."]
    return "\n".join(lines)


def fusion_section(report: dict) -> str:
    """Markdown table of one ``idh-predictor fusion`` report: every component and fusion with AUC,
    Brier and ECE, DeLong against the full fusion, and the prediction sets' observed coverage."""
    settings, conformal = report["settings"], next(r for r in report["results"] if r["name"] == report["model"])["conformal"]
    delong = next(r for r in report["results"] if r["name"] == report["model"])["delong_against"]
    lines = [f"{report['patients']} **simulated** patients ({report['mutant']} IDH-mutant), phantom cohort "
             f"`{Path(settings['cohort']).name}`; nested {settings['folds']}-fold cross-validation ({settings['inner_folds']} inner "
             f"folds for the stacker); reference (phantom truth) masks. Command: `idh-predictor fusion "
             f"{Path(settings['cohort']).name} --out DIR --workers {settings['workers']} --save-model BUNDLE`.", "",
             "| Model | AUC (95% CI) | Brier | ECE | DeLong vs full fusion |", "|---|---|---|---|---|"]
    for result in report["results"]:
        test = delong.get(result["name"])
        versus = f"{test['difference']:+.3f} (p = {test['p_value']:.2g})" if test else ""
        lines.append(f"| {result['name']} | {_auc(result)} | {result['calibration']['brier']:.3f} | "
                     f"{result['calibration']['ece']:.3f} | {versus} |")
    lines += ["", f"Components' probabilities are Platt-scaled, cross-fitted; the fusions' are the stacker's own. DeLong: "
              f"the full fusion's AUC minus the model's. Prediction sets at {report['coverage_nominal']:.0%} "
              f"({conformal['repeats']} random halvings, calibrate on one half, measure on the other): coverage wildtype "
              f"{conformal['wildtype']['mean']:.3f} (sd {conformal['wildtype']['sd']:.3f}), mutant {conformal['mutant']['mean']:.3f} "
              f"(sd {conformal['mutant']['sd']:.3f}), overall {conformal['overall']['mean']:.3f}; "
              f"{conformal['uncertain_fraction']['mean']:.1%} of answers \"uncertain\" (both classes)."]
    return "\n".join(lines)


def deployment_section(report: dict) -> str:
    """Markdown table of one ``idh-predictor validate-deployment`` report: each model on reference
    and on CNN masks (AUC, Brier, ECE; the fusions' prediction-set coverage), paired DeLong."""
    dice = report["cnn_whole_tumour_dice"]
    lines = [f"{report['patients']} held-out **simulated** patients ({report['mutant']} IDH-mutant), phantom cohort "
             f"`{Path(report['cohort']).name}`; the shipped bundles applied unchanged. CNN masks by {report['segmentation']} "
             f"(whole-tumour Dice against the reference: mean {dice['mean']:.3f}, min {dice['min']:.3f})"
             + (f"; refused by quality control on the CNN path and left out: {', '.join(report['refused_on_cnn_masks'])}"
                if report["refused_on_cnn_masks"] else "; none refused by quality control")
             + f". Command: `idh-predictor validate-deployment {Path(report['cohort']).name} --out DIR --record`.", "",
             "| Model | masks | AUC (95% CI) | Brier | ECE | coverage mutant / wildtype | uncertain | DeLong CNN vs reference |",
             "|---|---|---|---|---|---|---|---|"]
    for model, entry in report["models"].items():
        test = entry["delong_cnn_vs_reference"]
        for source in ("reference", "CNN"):
            figure = entry[source]
            coverage = figure.get("coverage")
            cells = (f"{coverage['mutant']:.2f} / {coverage['wildtype']:.2f} | {figure['uncertain_fraction']:.0%}"
                     if coverage else " | ")
            versus = f"{test['difference']:+.3f} (p = {test['p_value']:.2g})" if source == "CNN" else ""
            lines.append(f"| {model} | {source} | {_auc_cell(figure['auc'])} | {figure['brier']:.3f} | {figure['ece']:.3f} | {cells} | {versus} |")
    return "\n".join(lines)


def web_section(web: dict) -> str:
    """The web app on a real case (bench_web.py): the screenshot, each step through the page beside
    the command line, stroke-to-mask latencies and memory."""
    steps = web["web"]
    case = web["case"].split()[0]
    lines = [f"![The web app on real case {case}, the CNN's mask corrected in the browser]"
             f"(Resources/Screenshots/web-real-{case}.png)", "",
             f"Measured by `python Testing/Benchmarks/bench_web.py` on {web['date']} ({web['machine']}, CPU only, "
             f"software OpenGL): {web['case']}, headless Chromium on the same machine.", "",
             "| Step | web app | command line | ratio |", "|---|---|---|---|"]
    names = {"server_start_s": "server start", "load_s": "load the case", "first_image_s": "page opened to first image",
             "segment_s": "segmentation (CNN)", "paint_stroke_to_server_mask_s": "brush stroke (mouse up) to the mask on the server",
             "erase_stroke_to_server_mask_s": "eraser stroke to the mask on the server", "dlr_s": "DLR from the corrected mask",
             "export_s": "export the report"}
    for key, label in names.items():
        cli = web["cli"].get(key)
        lines.append(f"| {label} | {steps[key]:.2f} s | " + (f"{cli:.2f} s | {web['ratio_web_to_cli'][key]:.2f}x |" if cli else " | |"))
    memory = web["memory"]
    lines += ["", f"Memory: the server's peak {memory['server_peak_mb']} MB (the CNN and DLR run in child processes, "
              f"as on the command line); Chromium {memory['browser_mb']} MB."]
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    """Replace what lies between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"README has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def render_readme(text: str) -> str:
    """The README with its generated blocks refreshed from ``results/``."""
    demo = json.loads((RESULTS / "demo.json").read_text(encoding="utf-8"))
    text = replace_block(text, "demo-results", results_section(demo))
    text = replace_block(text, "fusion-results", fusion_section(json.loads((RESULTS / "fusion.json").read_text(encoding="utf-8"))))
    text = replace_block(text, "deployment-results",
                         deployment_section(json.loads((RESULTS / "deployment.json").read_text(encoding="utf-8"))))
    text = replace_block(text, "web", web_section(json.loads((RESULTS / "web.json").read_text(encoding="utf-8"))))
    return replace_block(text, "performance", performance_section())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", help="demo.json of the run to cite (copied into results/)")
    parser.add_argument("--fusion", help="report.json of the fusion run to cite (copied to results/fusion.json)")
    parser.add_argument("--deployment", help="report.json of the validate-deployment run to cite (copied to "
                        "results/deployment.json)")
    args = parser.parse_args()
    if args.deployment:
        shutil.copyfile(args.deployment, RESULTS / "deployment.json")
    if args.demo:
        shutil.copyfile(args.demo, RESULTS / "demo.json")
    if args.fusion:
        shutil.copyfile(args.fusion, RESULTS / "fusion.json")
    readme = ROOT / "README.md"
    readme.write_text(render_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
