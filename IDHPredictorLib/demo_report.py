"""``report.html`` of the demo: one self-contained page (figures embedded) from ``demo.json``."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .io.atomic import atomic_path
from .perfusion.patterns import pattern_test_text
from .validation.metrics import METRIC_KEYS
from .validation.permutation import verdict_text
from .validation.report import metric_cell

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}
th{background:#eee}.section td{background:#f6f6f6;font-weight:bold}.note{color:#b35900;font-weight:bold}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}"""


def _table(header: list[str], rows: list[list[object]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        if len(row) == 1:  # a section title spanning the table
            body.append(f'<tr class="section"><td colspan="{len(header)}">{html.escape(str(row[0]))}</td></tr>')
        else:
            body.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>")
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(body)}</table>'


def metrics_table(results: list[dict], table_id: str) -> str:
    """Rows grouped by section, columns Methods | AUC ... MCC, values with bootstrap CIs (the papers' layout)."""
    rows, section = [], None
    for result in results:
        if result["section"] != section:
            section = result["section"]
            rows.append([section])
        rows.append([result["name"], *(metric_cell(result["metrics"][k]) for k in METRIC_KEYS)])
    return _table(["Methods", *(k.upper() for k in METRIC_KEYS)], rows, table_id)


def _figure(folder: Path, relative: str, caption: str) -> str:
    path = folder / relative
    if not path.exists():
        return f"<p>(figure {html.escape(relative)} was not produced)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def machine_text(machine: dict) -> str:
    """``Linux-..., 2 CPUs, Python 3.11.7, torch 2.13.0+cpu (2 threads), no GPU``."""
    gpu = machine["gpu"] or "no GPU"
    return (f"{machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}, torch {machine['torch']} "
            f"({machine['torch_threads']} threads), {gpu}")


def write_html(folder: Path, record: dict) -> Path:
    """Render the demo record into ``folder/report.html``."""
    seg, dlr, perf, new = record["segmentation"], record["dlr"], record["perfusion"], record["new_patient"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(record['title'])}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(record['title'])}</h1>",
             "<p class='note'>All patients in this report are simulated (digital phantom). The numbers describe the "
             "method on the simulator, not clinical performance. Research use only, not for diagnosis.</p>",
             f"<p>Command: <code>{html.escape(record['command'])}</code><br>Date: {record['date']}<br>"
             f"Machine: {html.escape(machine_text(record['machine']))}<br>Cohort: {record['cohort']['patients']} patients, "
             f"{record['cohort']['mutant']} IDH-mutant, {record['cohort']['size']}, mix {record['cohort']['mix']}.</p>"]

    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in record.get("notes", [])]
    parts.append("<h2>Segmentation</h2>")
    parts.append(f"<p>Shipped model <code>{seg['model']}</code> on {len(seg['cases'])} new full-size (1 mm) phantom "
                 "patients, Dice against the phantom's labels.</p>")
    parts.append(_table(["Region", "Dice mean", "Dice sd"], [[region, f"{v['mean']:.3f}", f"{v['sd']:.3f}"]
                                                             for region, v in seg["dice"].items()], "segmentation-dice"))
    parts.append(_figure(folder, seg["overlay"], "FLAIR, prediction and phantom labels (1 red, 2 green, 4 yellow)"))

    validation = record["settings"]["validation"]
    parts.append(f"<h2>Deep-learning radiomics (Li et al. 2017)</h2><h3>Table 2 layout: {validation} and temporal split</h3>")
    parts.append("<p>Masks: the phantom's labels. GMM, selection and SVM fitted inside every training fold.</p>")
    parts.append(metrics_table(dlr["dlr_main"] + dlr["dlr_temporal"], "dlr-table2"))
    parts.append(_figure(folder, "dlr-main/roc.png", f"ROC, {validation}"))
    parts.append(_figure(folder, "dlr-temporal/roc.png", "ROC, temporal split"))
    if "dlr_layers" in dlr:
        parts.append("<h3>Table 3 layout: layer comparison (5-fold CV, multi-modal)</h3>")
        parts.append(metrics_table(dlr["dlr_layers"], "dlr-table3"))
    else:
        parts.append("<p>Layer comparison (Table 3) skipped in --quick.</p>")

    parts.append("<h2>DSC perfusion attention-LSTM (Choi et al. 2019)</h2>")
    parts.append(metrics_table(perf["results"], "perfusion-metrics"))
    parts.append(_table(["Comparison (CV)", "AUC difference", "DeLong p"],
                        [[f"LSTM vs {name}", f"{t['difference']:+.3f}", f"{t['p_value']:.3g}"] for name, t in perf["delong"].items()],
                        "perfusion-delong"))
    by_mean, by_sum = perf["patterns"], perf["patterns_by_summed_attention"]
    parts.append(_table(["Temporal pattern", "IDH-mutant (mean attention)", "IDH-wildtype (mean attention)",
                         "IDH-mutant (summed attention)", "IDH-wildtype (summed attention)"],
                        [[name, c["mutant"], c["wildtype"], by_sum["counts"][name]["mutant"], by_sum["counts"][name]["wildtype"]]
                         for name, c in by_mean["counts"].items()], "perfusion-patterns"))
    parts.append(f"<p>Pattern vs genotype, segments ranked by mean attention: {html.escape(pattern_test_text(by_mean))}; "
                 f"by summed attention: {html.escape(pattern_test_text(by_sum))}.</p>")
    parts.append(_figure(folder, "perfusion/roc.png", "ROC, perfusion"))
    for genotype in ("mutant", "wildtype"):
        parts.append(_figure(folder, f"perfusion/attention-{genotype}.png", f"Attention heat map, IDH-{genotype} example"))

    parts.append("<h2>Label-permutation (leakage) check</h2>")
    checks = [("DLR", dlr["dlr_main"][0]["permutation_test"]),
              ("Perfusion LSTM", next(r for r in perf["results"] if r["name"] == "Attention-LSTM" and r["validation"] == "cv")["permutation_test"])]
    parts.append(_table(["Check", "AUC with true labels", "AUC under shuffled labels", "p", "leakage check"], [
        [f"{name}, {test['folds']}-fold CV, {test['shuffles']} shuffles", f"{test['observed_auc']:.3f}",
         f"mean {test['null_mean']:.3f}, sd {test['null_sd'] or 0:.3f} (range {min(test['null_aucs']):.2f}-"
         f"{max(test['null_aucs']):.2f})", f"{test['p_value']:.3f}", verdict_text(test)]
        for name, test in checks], "permutation"))
    parts.append("<p>With shuffled labels nothing can be learnt, so the AUCs under shuffling must centre on 0.5. The DLR "
                 "test refits selection and SVM under every shuffle, reusing each fold's Fisher vectors (the GMM never sees "
                 "a label); the perfusion test retrains the fold networks under every shuffle, reusing the DSC analysis. "
                 "With 20 or more shuffles a check fails when the mean of the shuffled AUCs lies more than three standard "
                 "errors (and 0.1) above 0.5, which is what leakage does; a mean below 0.5 is no leakage but the known "
                 "downward bias of stratified cross-validation at small n (Parker et al., BMC Bioinformatics 2007), and "
                 "the verdict says so. Fewer shuffles (the quick demo's perfusion test) get no verdict. "
                 "p is the share of shuffles (the true labels counted as one) reaching the true AUC, so with N shuffles "
                 "it is never below 1/(N+1). At a few dozen patients the LSTM's shuffled AUCs can centre near 0.6 "
                 "without any leakage: its AUC pools the five fold networks' predictions, and each network learnt from "
                 "the patients the other folds hold out, so pairs across folds are not independent when the curves "
                 "fall into groups. The true labels' AUC pools the same way, which is why p compares it with the "
                 "shuffled AUCs rather than with 0.5.</p>")

    parts.append("<h2>One new patient, end to end</h2>")
    parts.append(_table(["Quantity", "Value"], [
        ["case", new["case_id"]], ["true IDH status (simulator)", new["truth_idh"]],
        ["segmentation Dice WT / TC / ET", " / ".join(f"{v:.3f}" for k, v in seg["cases"][0].items()
                                                      if k not in ("case_id", "seconds"))],
        ["DLR IDH-mutant probability", f"{new['dlr']['idh_mutant_probability']:.3f} ({new['dlr']['predicted_class']})"],
        ["perfusion IDH-mutant probability", f"{new['perfusion']['idh_mutant_probability']:.3f} ({new['perfusion']['predicted_class']})"],
        ["temporal pattern", new["perfusion"]["temporal_pattern"]],
        *_fusion_rows(new.get("fusion")),
        ["rCBV mean / 95th pct", f"{new['perfusion']['rcbv']['rcbv_mean']:.2f} / {new['perfusion']['rcbv']['rcbv_p95']:.2f}"],
        *_dsc_quality_rows(new["perfusion"]),
    ], "new-patient"))
    parts.append(_figure(folder, new["heatmap"], "New patient: curves over the attention heat map"))

    parts.append("<h2>Timings per stage</h2>")
    parts.append(_table(["Stage", "seconds"], [[k, v] for k, v in record["timings_s"].items()], "timings"))
    parts.append("</body></html>")
    with atomic_path(folder / "report.html") as tmp:
        tmp.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return folder / "report.html"


def _dsc_quality_rows(perfusion: dict) -> list[list[str]]:
    """The DSC series' quality verdict (absent from demo runs before the DSC quality control)."""
    quality = perfusion.get("dsc_quality")
    if not quality:
        return []
    problems = [c for c in quality["checks"] if c["verdict"] != "pass"]
    return [["DSC quality (rCBV and LSTM input)", quality["verdict"] + "".join(
        f"; {c['name'].replace('_', ' ')}: {c['message']}" for c in problems)]]


def _fusion_rows(fusion: dict | None) -> list[list[str]]:
    """The fused answer's rows (absent from demo runs before the fusion bundle existed)."""
    if not fusion:
        return []
    validation = fusion["validation"]
    auc = validation["auc"]
    rows = [["fused IDH-mutant probability (" + " + ".join(fusion["inputs_used"]) + ")",
             f"{fusion['idh_mutant_probability']:.3f} ({fusion['predicted_class']})"],
            [f"prediction set at {fusion['coverage']:.0%} coverage", f"{fusion['prediction_set']}; guarantee {fusion['guarantee']}"],
            ["fusion bundle's validation", f"AUC {auc['value']:.3f}, Brier {validation['brier']:.3f}, ECE {validation['ece']:.3f} "
             f"({validation['validation']}, {validation['patients']} {validation['labels']} patients, {validation['masks']} masks)"]]
    on_cnn = dict(fusion.get("deployment_validation") or {}).get("CNN")
    if on_cnn:
        rows.append(["... on the masks deployment uses", f"AUC {on_cnn['auc']['value']:.3f}, Brier {on_cnn['brier']:.3f}, "
                     f"ECE {on_cnn['ece']:.3f} ({on_cnn['validation']}, {on_cnn['patients']} {on_cnn['labels']} patients, "
                     f"{on_cnn['masks']} masks)"])
    return rows

