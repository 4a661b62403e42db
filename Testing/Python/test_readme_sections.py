"""The README's generated sections are what Testing/Benchmarks/readme_sections.py renders from
the committed JSON (so no number in them is typed by hand or stale)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("readme_sections", ROOT / "Testing" / "Benchmarks" / "readme_sections.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_readme_sections_match_the_committed_results() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _module().render_readme(readme) == readme, "run: python Testing/Benchmarks/readme_sections.py"


def test_results_section_says_the_patients_are_simulated() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- demo-results:start -->")[1].split("<!-- demo-results:end -->")[0]
    assert "simulated patients" in block and "AUC" in block
