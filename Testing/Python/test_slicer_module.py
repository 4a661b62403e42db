"""Static checks of the Slicer module that need no Slicer: the .ui, the parameter node and the
widget agree, and the library stays free of Qt/Slicer imports (it must run outside Slicer)."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "IDHPredictor" / "IDHPredictor.py"
UI = ROOT / "IDHPredictor" / "Resources" / "UI" / "IDHPredictor.ui"


def _parameter_annotations() -> dict[str, str]:
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "IDHPredictorParameterNode")
    return {stmt.target.id: ast.unparse(stmt.annotation) for stmt in node.body if isinstance(stmt, ast.AnnAssign)}


def _ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI).getroot().iter("widget")}


def _bound_widgets() -> dict[str, ET.Element]:
    """Parameter name -> the widget bound to it through the SlicerParameterName property."""
    bound = {}
    for widget in _ui_widgets().values():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget
    return bound


def test_every_parameter_is_bound_to_exactly_one_widget_of_a_fitting_class() -> None:
    annotations = _parameter_annotations()
    bound = _bound_widgets()
    assert set(bound) == set(annotations)
    for name, annotation in annotations.items():
        widget = bound[name]
        cls = widget.get("class")
        if "vtkMRML" in annotation:
            assert cls == "qMRMLNodeComboBox", name
            # the wrapper writes None as a node field's default; a Union of node types must admit it
            assert "Union[" not in annotation or "None" in annotation, (name, annotation)
            node_types = {s.text for s in widget.iter("string")}
            assert all(t in node_types for t in re.findall(r"vtkMRML\w+", annotation)), (name, node_types)
        elif annotation == "bool":
            assert cls == "QCheckBox", name
        elif annotation.startswith("Annotated[str, Choice("):
            assert cls == "QComboBox", name
        else:
            assert "float" in annotation and cls in ("QDoubleSpinBox", "ctkSliderWidget"), name


# What a name promises about its widget: suffix -> acceptable Qt/CTK/MRML classes.
NAME_CLASSES = {"Selector": {"qMRMLNodeComboBox"}, "Label": {"QLabel"}, "SpinBox": {"QDoubleSpinBox", "QSpinBox"},
                "CheckBox": {"QCheckBox"}, "ComboBox": {"QComboBox"}, "DirectoryButton": {"ctkDirectoryButton"},
                "CollapsibleButton": {"ctkCollapsibleButton"}, "Button": {"QPushButton"}, "Bar": {"QProgressBar"}}


def test_widget_uses_only_widgets_that_exist_in_the_ui_with_sensible_classes() -> None:
    widgets = _ui_widgets()
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text(encoding="utf-8")))
    assert used and used <= set(widgets), used - set(widgets)
    for name, widget in widgets.items():
        suffix = next((s for s in sorted(NAME_CLASSES, key=len, reverse=True) if name.endswith(s)), None)
        if suffix is not None:
            assert widget.get("class") in NAME_CLASSES[suffix], (name, widget.get("class"))


def test_ui_connects_every_node_selector_to_the_scene() -> None:
    root = ET.parse(UI).getroot()
    selectors = {n for n, w in _ui_widgets().items() if w.get("class") == "qMRMLNodeComboBox"}
    connected = {c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert selectors and selectors == connected


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


def test_library_imports_slicer_only_in_the_bridge_and_never_qt() -> None:
    forbidden = {"qt", "ctk", "slicer", "PythonQt"}
    offenders = []
    for path in (ROOT / "IDHPredictorLib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            allowed = {"slicer"} if path.name == "slicer_bridge.py" else set()
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in forbidden - allowed]
    assert not offenders, offenders
    bridge = ast.parse((ROOT / "IDHPredictorLib" / "slicer_bridge.py").read_text(encoding="utf-8"))
    global_state = {"mrmlScene", "modules", "app", "util"}  # the bridge takes the scene as a parameter
    used = {n.attr for n in ast.walk(bridge) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == "slicer"}
    assert used and not used & global_state, used & global_state


def _cmake_list(path: Path, variable: str) -> set[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", path.read_text(encoding="utf-8"), re.S)
    assert match, variable
    return {line.strip() for line in match.group(1).splitlines() if line.strip() and not line.strip().startswith("#")}


def test_cmake_lists_every_script_and_resource() -> None:
    library = {p.relative_to(ROOT).as_posix() for p in (ROOT / "IDHPredictorLib").rglob("*.py")}
    assert _cmake_list(ROOT / "CMakeLists.txt", "IDHPREDICTORLIB_SCRIPTS") == library
    models = {p.relative_to(ROOT).as_posix() for p in (ROOT / "Resources" / "models").rglob("*") if p.is_file()}
    assert _cmake_list(ROOT / "CMakeLists.txt", "IDHPREDICTORLIB_RESOURCES") == models
    module_dir = ROOT / "IDHPredictor"
    resources = {p.relative_to(module_dir).as_posix().replace("IDHPredictor.", "${MODULE_NAME}.")
                 for p in (module_dir / "Resources").rglob("*") if p.is_file()}
    assert _cmake_list(module_dir / "CMakeLists.txt", "MODULE_PYTHON_RESOURCES") == resources
    assert _cmake_list(module_dir / "CMakeLists.txt", "MODULE_PYTHON_SCRIPTS") == {"${MODULE_NAME}.py"}
    module_cmake = (module_dir / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "WITH_GENERIC_TESTS" in module_cmake and "slicer_add_python_unittest" in module_cmake


def test_requirements_are_installed_on_demand_not_at_import() -> None:
    source = MODULE.read_text(encoding="utf-8")
    tree = ast.parse(source)
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("IDHPredictorLib" in ast.unparse(n) or "torch" in ast.unparse(n) for n in top_level)
    assert "pip_ensure" in source and "pip_install" in source and "PyTorchUtils" in source
    requirements = (ROOT / "IDHPredictor" / "Resources" / "requirements.txt").read_text(encoding="utf-8")
    packages = [line.split(">")[0].split("=")[0].strip() for line in requirements.splitlines() if line.strip() and not line.startswith("#")]
    assert "scikit-learn" in packages and "torch" not in packages  # torch comes through PyTorchUtils


def test_ruff_is_clean() -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.fail("ruff not installed: pip install -e '.[test]'")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
