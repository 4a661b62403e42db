"""``idh-predictor demo`` end to end on a tiny cohort: the report holds what the run computed."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from IDHPredictorLib.demo import DemoSettings, run_demo
from IDHPredictorLib.validation.report import metric_cell


class ReportParser(HTMLParser):
    """Tables (by id) as lists of rows of cell texts, and the images' sources."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._table = attributes.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.images.append(attributes.get("src") or "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    settings = DemoSettings(cases=12, full_size_cases=1, full_size="small", validation="kfold", compare_layers=False,
                            radiomics=False, lstm_epochs=5, perfusion_shuffles=2, workers=2)
    run_demo(out, settings, lambda name: lambda done, total: None, "test")
    return out


def test_report_holds_the_runs_numbers_and_figures(demo: Path) -> None:
    record = json.loads((demo / "demo.json").read_text())
    parser = ReportParser()
    parser.feed((demo / "report.html").read_text(encoding="utf-8"))
    tables = parser.tables
    assert {"segmentation-dice", "dlr-table2", "perfusion-metrics", "perfusion-patterns", "permutation", "new-patient",
            "timings"} <= set(tables)
    assert tables["dlr-table2"][0] == ["Methods", "AUC", "ACC", "SENS", "SPEC", "PPV", "NPV", "MCC"]
    dlr_rows = [row for row in tables["dlr-table2"][1:] if len(row) == 8]
    expected = record["dlr"]["dlr_main"] + record["dlr"]["dlr_temporal"]
    assert [row[0] for row in dlr_rows] == [result["name"] for result in expected]
    for row, result in zip(dlr_rows, expected):
        assert row[1:] == [metric_cell(result["metrics"][key]) for key in ("auc", "acc", "sens", "spec", "ppv", "npv", "mcc")]
    permutation = record["dlr"]["dlr_main"][0]["permutation_test"]
    assert tables["permutation"][1][1] == f"{permutation['observed_auc']:.3f}"
    assert len(permutation["null_aucs"]) == 20 and tables["permutation"][1][3] == f"{permutation['p_value']:.3f}"
    lstm_cv = next(r for r in record["perfusion"]["results"] if r["name"] == "Attention-LSTM" and r["validation"] == "cv")
    perfusion_test = lstm_cv["permutation_test"]
    assert len(perfusion_test["null_aucs"]) == 2 and tables["permutation"][2][1] == f"{perfusion_test['observed_auc']:.3f}"
    assert perfusion_test["observed_auc"] == lstm_cv["metrics"]["auc"]["value"]
    stages = {row[0] for row in tables["timings"][1:]}
    assert {"phantom cohort (small)", "segmentation + Dice (full size)", "perfusion 5-fold CV + test (permutation test, 2 shuffles)",
            "total"} <= stages
    assert all(float(row[1]) >= 0 for row in tables["timings"][1:])
    # every figure is embedded, none missing: overlay, 2 DLR ROCs, perfusion ROC, 2 heat maps, new patient
    assert len(parser.images) == 7 and all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "was not produced" not in (demo / "report.html").read_text(encoding="utf-8")
    assert "simulated" in (demo / "report.html").read_text(encoding="utf-8")
    # the new patient's rows: the DSC verdicts beside the rCBV, the fusion bundle's figures on each kind of mask
    new_patient = dict((row[0], row[1]) for row in tables["new-patient"][1:] if len(row) == 2)
    assert new_patient["DSC quality (rCBV and LSTM input)"].split(";")[0] == record["new_patient"]["perfusion"]["dsc_quality"]["verdict"]
    assert "reference (phantom truth) masks" in new_patient["fusion bundle's validation"]
    assert "CNN (segmentation-flair-t1ce) masks" in new_patient["... on the masks deployment uses"]


def test_demo_json_records_machine_timings_and_settings(demo: Path) -> None:
    record = json.loads((demo / "demo.json").read_text())
    assert record["machine"]["cpus"] >= 1 and record["settings"]["cases"] == 12
    assert record["timings_s"]["total"] == pytest.approx(sum(v for k, v in record["timings_s"].items() if k != "total"), abs=0.2)
    assert record["new_patient"]["truth_idh"] in ("mutant", "wildtype")
    assert 0.0 <= record["new_patient"]["perfusion"]["idh_mutant_probability"] <= 1.0
