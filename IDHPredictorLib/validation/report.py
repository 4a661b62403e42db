"""Evaluation reports: ``report.json`` (metric keys auc, acc, sens, spec, ppv, npv, mcc, each with
a bootstrap CI), a Markdown table laid out like the papers' tables, and ROC curves as PNG."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from ..io.atomic import atomic_path
from ..plotting import plt
from .metrics import METRIC_KEYS, MIN_CLASS_FOR_CI


@dataclass
class EvaluationResult:
    """One evaluated model: what it is, on which patients and how validated, and its metrics."""

    name: str
    section: str
    validation: str
    y_true: np.ndarray
    scores: np.ndarray
    metrics: dict[str, dict[str, float | None]]
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "section": self.section, "validation": self.validation,
                "n_patients": int(len(self.y_true)), "n_positive": int(np.sum(self.y_true)),
                "metrics": self.metrics, **self.extra}


def metric_cell(metric: dict[str, float | None]) -> str:
    """``0.9560 (0.89-1.00)``: value with its bootstrap CI; ``0.9560 (no CI)`` where too few
    patients allow none (the table's footnote says why); ``n/a`` when undefined."""
    value, low, high = metric["value"], metric["ci_low"], metric["ci_high"]
    if value is None:
        return "n/a"
    return f"{value:.4f} (no CI)" if low is None else f"{value:.4f} ({low:.2f}-{high:.2f})"


def markdown_table(results: list[EvaluationResult]) -> str:
    """Rows grouped by section, columns Methods | AUC | ACC | SENS | SPEC | PPV | NPV | MCC."""
    lines = ["| Methods | " + " | ".join(k.upper() for k in METRIC_KEYS) + " |",
             "|---" * (len(METRIC_KEYS) + 1) + "|"]
    section = None
    for result in results:
        if result.section != section:
            section = result.section
            lines.append(f"| **{section}** |" + " |" * len(METRIC_KEYS))
        lines.append(f"| {result.name} | " + " | ".join(metric_cell(result.metrics[k]) for k in METRIC_KEYS) + " |")
    return "\n".join(lines) + ("\n\nValues with stratified bootstrap 95% CI (1,000 resamples of patients, each "
                                f"class within itself); \"no CI\": fewer than {MIN_CLASS_FOR_CI} patients in a class.\n")


def roc_figure(results: list[EvaluationResult], path: Path, title: str) -> None:
    """ROC curves of the results (those with both classes tested) in one PNG."""
    figure, axes = plt.subplots(figsize=(5, 5), dpi=110)
    for result in results:
        if result.metrics["auc"]["value"] is None:
            continue
        fpr, tpr, _ = roc_curve(result.y_true, result.scores)
        axes.plot(fpr, tpr, label=f"{result.name} (AUC {result.metrics['auc']['value']:.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def calibration_table(results: list[EvaluationResult]) -> str:
    """Brier score and ECE of every result that carries probabilities (``extra["calibration"]``)."""
    rated = [r for r in results if r.extra.get("calibration")]
    if not rated:
        return ""
    lines = ["| Methods | Validation | Brier | ECE | probability |", "|---|---|---|---|---|"]
    for result in rated:
        for key in ("calibration", "calibration_uncalibrated"):
            if result.extra.get(key):
                summary = result.extra[key]
                lines.append(f"| {result.name} | {result.section} | {summary['brier']:.3f} | {summary['ece']:.3f} | "
                             f"{summary['probability']} |")
    return ("\n## Calibration\n\n" + "\n".join(lines) + "\n\nBrier: mean squared error of the probability; ECE: "
            "expected calibration error over 10 equal-width bins (0 = perfectly calibrated). Cross-fitted: each "
            "patient's probability from Platt scaling fitted on the other patients' out-of-fold scores.\n")


def reliability_figure(results: list[EvaluationResult], path: Path, title: str) -> None:
    """Reliability diagram (observed mutant rate against mean predicted probability, per
    probability bin) of every result with a calibration summary."""
    figure, axes = plt.subplots(figsize=(5, 5), dpi=110)
    for result in results:
        summary = result.extra.get("calibration")
        if not summary:
            continue
        rows = summary["reliability"]
        axes.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], marker="o", markersize=3,
                  label=f"{result.name}, {result.validation} (ECE {summary['ece']:.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="predicted IDH-mutant probability", ylabel="observed IDH-mutant rate", title=title,
             xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="upper left", fontsize=6)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def write_report(out_dir: Path, results: list[EvaluationResult], title: str, settings: dict[str, object],
                 summary: dict[str, object] | None = None, notes: str = "") -> Path:
    """Write report.json (``summary`` keys first), table.md (``notes`` appended), roc.png and, when
    any result has probabilities, reliability.png into ``out_dir``; return the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results) + calibration_table(results) + notes
    if any(r.extra.get("calibration") for r in results):
        reliability_figure(results, out_dir / "reliability.png", title)
    with atomic_path(out_dir / "table.md") as tmp:
        tmp.write_text(f"# {title}\n\n{table}", encoding="utf-8")
    roc_figure(results, out_dir / "roc.png", title)
    record = {**(summary or {}), "title": title, "settings": settings, "results": [r.as_dict() for r in results]}
    with atomic_path(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out_dir / "report.json"
