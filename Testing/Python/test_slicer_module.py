"""Static checks of the Slicer module that need no Slicer: the .ui, the parameter node and the
widget agree, and the library stays free of Qt/Slicer imports (it must run outside Slicer)."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "IDHPredictor" / "IDHPredictor.py"
UI = ROOT / "IDHPredictor" / "Resources" / "UI" / "IDHPredictor.ui"


def _parameter_names() -> set[str]:
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "IDHPredictorParameterNode")
    return {stmt.target.id for stmt in node.body if isinstance(stmt, ast.AnnAssign)}


def test_ui_bindings_match_the_parameter_node() -> None:
    root = ET.parse(UI).getroot()
    bound = {prop.find("string").text for prop in root.iter("property") if prop.get("name") == "SlicerParameterName"}
    assert bound == _parameter_names()


def test_widget_uses_only_widgets_that_exist_in_the_ui() -> None:
    names = {w.get("name") for w in ET.parse(UI).getroot().iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text(encoding="utf-8")))
    assert used and used <= names, used - names


def test_module_has_the_template_classes_and_compiles() -> None:
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"IDHPredictor", "IDHPredictorWidget", "IDHPredictorLogic", "IDHPredictorTest"} <= classes
    compile(MODULE.read_text(encoding="utf-8"), str(MODULE), "exec")


def test_extension_metadata_and_resources() -> None:
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf'set\({key} "[^"]+"\)', cmake), key
    assert "slicerMacroBuildScriptedModule" in (ROOT / "IDHPredictor" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert (ROOT / "IDHPredictor" / "Resources" / "Icons" / "IDHPredictor.png").stat().st_size > 0


def test_library_never_imports_qt_or_slicer() -> None:
    forbidden = {"qt", "ctk", "slicer", "PythonQt"}
    offenders = []
    for path in (ROOT / "IDHPredictorLib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert not offenders, offenders
