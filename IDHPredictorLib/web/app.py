"""``idh-predictor web``: the Slicer module's workflow in the browser, on trame-slicer.

Slicer's own MRML scene, slice and 3-D views (rendered on the server, streamed as images) and
Segment Editor effects run in this Python process. Every step calls what the Slicer module calls:
``scene_workflow`` and the MRML bridge for the scene, ``case_jobs`` + ``JobController`` for the
CNN and DLR (child processes, cancellable); this file holds only the trame page and its state.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Off-screen rendering without a display: EGL (must be chosen before VTK creates a window).
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from trame.app import TrameApp  # noqa: E402
from trame.widgets import html, vuetify3  # noqa: E402
from trame_slicer import module as trame_slicer_module  # noqa: E402
from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui, create_vertical_view_gutter_ui  # noqa: E402
from trame_slicer.core import LayoutManager, SlicerApp  # noqa: E402
from trame_slicer.rca_view import register_rca_factories  # noqa: E402
from trame_slicer.segmentation import BrushDiameterMode, SegmentationEffectErase, SegmentationEffectNoTool, SegmentationEffectPaint  # noqa: E402
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition  # noqa: E402
from trame_vuetify.ui.vuetify3 import SinglePageLayout  # noqa: E402
from undo_stack import UndoStack  # noqa: E402

from .. import scene_workflow as workflow  # noqa: E402
from .. import slicer_bridge as bridge  # noqa: E402
from ..case_jobs import SegmentationResult, compute_fusion, compute_perfusion, start_dlr, start_segmentation  # noqa: E402
from ..catalog import AUTOMATIC, entries  # noqa: E402
from ..io.terminology import TUMOUR_SEGMENTS  # noqa: E402
from ..job_controller import JobController  # noqa: E402
from .data_folder import MAX_UPLOAD_BYTES, DataFolder  # noqa: E402

log = logging.getLogger(__name__)
EFFECTS = {"paint": SegmentationEffectPaint, "erase": SegmentationEffectErase, "none": SegmentationEffectNoTool}
BUTTON_STYLE = "border:1px solid #888;border-radius:3px;padding:2px 8px;margin:2px"


def _named_view(gutter: Callable) -> Callable:
    """A view's toolbar (trame-slicer's own) plus a hidden marker naming the view (Red = axial,
    Yellow = sagittal, Green = coronal, 1 = 3-D), so scripts and tests can find its image."""

    def populate(server: object, view_id: str, slicer_view: object) -> None:
        html.Div(classes=f"view-marker view-{slicer_view.get_singleton_tag()}", style="display:none")
        gutter(server, view_id, slicer_view)
    return populate


def _guarded(action: Callable) -> Callable:
    """Run a page action; any error (the CLI's message: what, which file, the fix) is shown in the
    page instead of vanishing into the server log."""

    @functools.wraps(action)
    def run(self: IDHPredictorWebApp, *args: object) -> None:
        self.state.error = ""
        try:
            action(self, *args)
        except Exception as error:  # shown to the user, and logged with its traceback
            log.exception("%s failed", action.__name__)
            self.state.error = str(error)
    return run


class IDHPredictorWebApp(TrameApp):
    """The page: case picker, four views, the Segment Editor's brush, the steps and their results."""

    def __init__(self, data: DataFolder, reports: Path, server: object = None) -> None:
        super().__init__(server)
        self.server.enable_module(trame_slicer_module)
        self.data, self.reports = data, reports
        self.slicer_app = SlicerApp()
        self.scene = self.slicer_app.scene
        self.editor = self.slicer_app.segmentation_editor
        self.undo_stack = UndoStack(undo_limit=20)
        self.editor.set_undo_stack(self.undo_stack)
        self.case: workflow.SceneCase | None = None
        self.controller = JobController(self.scene, self)
        register_rca_factories(self.slicer_app.view_manager, self.server,
                               slice_view_ui_f=_named_view(create_vertical_slice_view_gutter_ui),
                               three_d_view_ui_f=_named_view(create_vertical_view_gutter_ui),
                               target_fps=10, blur_fps=2)  # software GL on a few cores: fewer frames, faster strokes
        self.layout_manager = LayoutManager(self.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout("quad", Layout(LayoutDirection.Horizontal, [
            Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.coronal_view()]),
            Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.sagittal_view(), ViewLayoutDefinition.threed_view()])]))
        self.layout_manager.set_layout("quad")
        self._initial_state()
        for signal in self.undo_stack.signals():
            signal.connect(self._on_undo_changed)
        self.editor.segmentation_modified.connect(self._volumes_soon)
        self._volumes_pending = False
        self._build_ui()

    def _initial_state(self) -> None:
        state = self.state
        state.trame__title = "IDH Predictor"
        state.cases, state.case_name = self.data.cases(), ""
        state.models = [AUTOMATIC, *(entry.id for entry in entries("segmentation"))]
        state.segmentation_model = AUTOMATIC
        state.error = state.status = state.answer = state.chart_src = state.report_path = ""
        state.busy, state.progress, state.loaded, state.segmented = False, 0, False, False
        state.brush_size, state.sphere_brush, state.effect = 6.0, False, "none"
        state.segments, state.active_segment = [], ""
        state.can_undo = state.can_redo = False
        state.rcbv_opacity, state.age = 0.0, 50.0
        state.results, state.volumes = [], []
        state.upload = None

    # -- JobView: what the controller reports -------------------------------------------------
    def show_busy(self, message: str | None) -> None:
        self.state.busy, self.state.progress = message is not None, 0
        if message is not None:
            self.state.status = message

    def show_progress(self, progress: object) -> None:
        self.state.progress = round(100 * progress.fraction)
        self.state.status = progress.description

    def show_result(self, result: object, case: workflow.SceneCase) -> None:
        self.state.status = f"{result.kind} finished for {case.case_id}"
        if case is not self.case:
            return
        if isinstance(result, SegmentationResult):
            self._edit(case)
        self._show_results()

    def show_error(self, message: str, details: str) -> None:
        self.state.status = message
        if details:
            self.state.error = f"{message}\n{details[-2000:]}"

    # -- steps ---------------------------------------------------------------------------------
    @_guarded
    def load_case(self) -> None:
        self._require_idle("load another case")
        folder = self.data.resolve(self.state.case_name)
        self.scene.Clear(0)
        self.case = workflow.load_case(self.scene, folder)
        self.slicer_app.display_manager.show_volume_in_slice_background(self._background())
        self.slicer_app.display_manager.reset_views()
        if self.case.segmentation is not None:
            self._edit(self.case)
        self.state.loaded, self.state.chart_src, self.state.answer = True, "", ""
        self.state.status = f"Loaded {self.case.case_id} ({', '.join(sorted(self.case.volumes))})"
        self._show_results()

    @_guarded
    def upload_case(self, files: list[dict]) -> None:
        """Keep the files the user uploaded (one case, checked) in the data folder and select it."""
        self._require_idle("upload a case")
        name = self.data.save_upload({f["name"]: f["content"] for f in files})
        self.state.cases, self.state.case_name = self.data.cases(), name
        self.state.status = f"Uploaded {name}; press Load"

    @_guarded
    def segment(self) -> None:
        case = self._selected()
        self.controller.start(lambda: start_segmentation(case, self.state.segmentation_model, python=sys.executable),
                              f"Segmenting {case.case_id}...")
        self._poll_soon()

    @_guarded
    def predict_dlr(self) -> None:
        case = self._selected()
        self.controller.start(lambda: start_dlr(case, python=sys.executable), f"DLR for {case.case_id}...")
        self._poll_soon()

    @_guarded
    def cancel(self) -> None:
        self.controller.cancel()

    @_guarded
    def perfusion(self) -> None:
        from ..perfusion.patterns import attention_heatmap

        case = self._selected()
        self._require_idle("run perfusion")
        result = compute_perfusion(self.scene, case)
        rcbv = self.scene.GetFirstNodeByName(f"{case.case_id} rCBV")
        self.slicer_app.display_manager.show_volume_in_slice_foreground(rcbv)
        self.state.rcbv_opacity = 0.5
        plot = case.attention_plot
        with tempfile.TemporaryDirectory() as tmp:
            attention_heatmap(np.asarray(plot["curves"]), np.asarray(plot["attention"]), np.asarray(plot["grid_s"]),
                              Path(tmp) / "chart.png", str(plot["title"]), np.asarray(plot["present"]))
            self.state.chart_src = "data:image/png;base64," + base64.b64encode((Path(tmp) / "chart.png").read_bytes()).decode()
        self.state.status = f"Perfusion: P(IDH mutant) {result.probability:.2f}, {result.record['temporal_pattern']}"
        self._show_results()

    @_guarded
    def fusion(self) -> None:
        from ..fusion.bundle import describe_fusion

        case = self._selected()
        self._require_idle("compute the combined answer")
        result = compute_fusion(self.scene, case, float(self.state.age))
        self.state.answer = describe_fusion(result.record)
        self._show_results()

    @_guarded
    def export(self) -> None:
        case = self._selected()
        folder = workflow.export_report(case, self.reports / case.case_id)
        self.state.report_path = str(folder)
        # the time makes each export's message new, so the page shows it even right after an earlier export
        self.state.status = f"Report written to {folder} at {time.strftime('%H:%M:%S')}"

    @_guarded
    def set_effect(self, name: str) -> None:
        self._selected()
        self.editor.set_active_effect_type(EFFECTS[name])
        self._apply_brush()
        self.state.effect = name

    def _apply_brush(self) -> None:
        """The brush's diameter (mm) and shape (a disc in the slice, or a sphere through nearby slices)."""
        effect = self.editor.active_effect
        if effect is not None and hasattr(effect, "set_brush_diameter"):
            effect.set_brush_diameter(float(self.state.brush_size), BrushDiameterMode.Absolute)
            effect.set_use_sphere_brush(bool(self.state.sphere_brush))

    @_guarded
    def undo(self) -> None:
        self.undo_stack.undo()

    @_guarded
    def redo(self) -> None:
        self.undo_stack.redo()

    # -- helpers -------------------------------------------------------------------------------
    def _selected(self) -> workflow.SceneCase:
        if self.case is None:
            raise ValueError("Load a case first: pick one from the list and press Load.")
        return self.case

    def _require_idle(self, what: str) -> None:
        if self.controller.busy:
            raise RuntimeError(f"Cannot {what} while the {self.controller.job.kind} job runs; wait for it or cancel it.")

    def _background(self) -> object:
        return self.case.volumes.get("flair") or self.case.reference

    def _edit(self, case: workflow.SceneCase) -> None:
        """Hand the case's segmentation to the Segment Editor (over the FLAIR), brush off."""
        self.editor.set_active_segmentation(case.segmentation, self._background())
        self.editor.set_surface_representation_enabled(True)
        self.editor.set_active_effect_type(SegmentationEffectNoTool)
        self.undo_stack.clear()
        self.state.segmented, self.state.effect = True, "none"
        segmentation = case.segmentation.GetSegmentation()
        self.state.segments = [{"id": segment_id, "name": segmentation.GetSegment(segment_id).GetName()}
                               for segment_id in self.editor.get_segment_ids()]
        self.state.active_segment = self.editor.get_active_segment_id()
        self.slicer_app.display_manager.reset_views()
        labels = bridge.labels_from_segmentation_node(case.segmentation, case.reference)
        self._show_tumour(labels)
        self._show_volumes(labels)

    def _show_results(self) -> None:
        case = self.case
        self.state.results = [{"name": name, "value": value} for name, value in
                              bridge.flatten_results({"case_id": case.case_id, **case.results})] if case else []

    def _show_tumour(self, labels: sitk.Image) -> None:
        """Centre the three slice views on the tumour (the middle of the volume shows healthy
        brain on most real cases)."""
        voxels = np.argwhere(sitk.GetArrayViewFromImage(labels) > 0)
        if not len(voxels):
            return
        x, y, z = labels.TransformContinuousIndexToPhysicalPoint(voxels.mean(axis=0)[::-1].tolist())
        for view in self.slicer_app.view_manager.get_slice_views():
            self.scene.GetNodeByID(view.get_view_node_id()).JumpSliceByCentering(-x, -y, z)  # ITK LPS -> Slicer RAS

    def _volumes_soon(self, *_: object) -> None:
        """Refresh the segment volumes after the editor's change, outside its event (once per burst)."""
        if not self._volumes_pending:
            self._volumes_pending = True
            asyncio.get_event_loop().call_soon(self._show_volumes)

    def _show_volumes(self, labels: sitk.Image | None = None) -> None:
        """Each segment's volume in mL, from ``labels`` or read back from the segmentation node as
        DLR will read it."""
        self._volumes_pending = False
        case = self.case
        if case is None or case.segmentation is None:
            self.state.volumes = []
            return
        if labels is None:
            labels = bridge.labels_from_segmentation_node(case.segmentation, case.reference)
        voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
        counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=5)
        with self.state:
            self.state.volumes = [{"name": info[0], "ml": round(float(counts[value]) * voxel_ml, 3)}
                                  for value, info in TUMOUR_SEGMENTS.items()]

    def _on_undo_changed(self, *_: object) -> None:
        self.state.can_undo, self.state.can_redo = self.undo_stack.can_undo(), self.undo_stack.can_redo()

    def _poll_soon(self) -> None:
        asyncio.get_event_loop().create_task(self._poll_until_done())

    async def _poll_until_done(self) -> None:
        while self.controller.busy:
            await asyncio.sleep(0.2)
            with self.state:
                self.controller.poll()

    # -- page ----------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        @self.state.change("brush_size", "sphere_brush")
        def _brush(**_: object) -> None:
            self._apply_brush()

        @self.state.change("active_segment")
        def _segment(active_segment: str, **_: object) -> None:
            if active_segment and active_segment != self.editor.get_active_segment_id():
                self.editor.set_active_segment_id(active_segment)

        @self.state.change("upload")
        def _upload(upload: list[dict] | None, **_: object) -> None:
            if upload:
                self.upload_case(upload)

        @self.state.change("rcbv_opacity")
        def _opacity(rcbv_opacity: float, **_: object) -> None:
            for view in self.slicer_app.view_manager.get_slice_views():
                view.set_foreground_opacity(float(rcbv_opacity))

        with SinglePageLayout(self.server) as layout:
            layout.title.set_text("IDH Predictor (research use only; models trained on simulated patients)")
            with layout.toolbar, html.Div(classes="d-flex flex-row align-center flex-wrap", style="font-size:13px"):
                with html.Select(id="case", v_model=("case_name",), disabled=("busy",), style=BUTTON_STYLE):
                    html.Option("pick a case", value="", disabled=True)
                    html.Option("{{ c }}", v_for="c in cases", key="c", value=("c",))
                vuetify3.VFileInput(id="upload", v_model=("upload", None), multiple=True, accept=".nii,.nii.gz", density="compact",
                                    label="or upload a case", hide_details=True, disabled=("busy",), style="min-width:14em")
                self._button("load", "Load", self.load_case, "busy || !case_name")
                with html.Select(id="segmentation-model", v_model=("segmentation_model",), disabled=("busy",), style=BUTTON_STYLE):
                    html.Option("{{ m }}", v_for="m in models", key="m", value=("m",))
                self._button("segment", "Segment", self.segment, "busy || !loaded")
                self._button("cancel", "Cancel", self.cancel, "!busy")
                html.Progress(id="progress", max=100, value=("progress",), v_show=("busy",))
                with html.Select(id="segment", v_model=("active_segment",), disabled=("busy || !segmented",), style=BUTTON_STYLE):
                    html.Option("{{ s.name }}", v_for="s in segments", key="s.id", value=("s.id",))
                self._button("paint", "Paint", (self.set_effect, "['paint']"), "busy || !segmented")
                self._button("erase", "Erase", (self.set_effect, "['erase']"), "busy || !segmented")
                self._button("no-tool", "Stop editing", (self.set_effect, "['none']"), "busy || !segmented")
                html.Span("brush {{ brush_size }} mm")
                html.Input(id="brush-size", type="range", min=1, max=30, step=1, v_model_number=("brush_size",))
                with html.Label(style="margin:0 4px"):
                    html.Input(id="sphere-brush", type="checkbox", v_model=("sphere_brush",))
                    html.Span(" 3-D brush")
                self._button("undo", "Undo", self.undo, "busy || !can_undo")
                self._button("redo", "Redo", self.redo, "busy || !can_redo")
                self._button("dlr", "DLR", self.predict_dlr, "busy || !segmented")
                self._button("perfusion", "Perfusion", self.perfusion, "busy || !segmented")
                html.Span("age")
                html.Input(id="age", type="number", min=0, max=120, v_model_number=("age",), style="width:4em")
                self._button("fusion", "Combined answer", self.fusion, "busy || !segmented")
                self._button("export", "Export report", self.export, "busy || !loaded")
                html.Span("rCBV")
                html.Input(id="rcbv-opacity", type="range", min=0, max=1, step=0.05, v_model_number=("rcbv_opacity",))
            with layout.content, html.Div(style="position:absolute;inset:0;display:flex"):
                with html.Div(style="flex:3;display:flex;position:relative"):
                    self.layout_manager.initialize_layout_grid(layout)
                with html.Div(id="side", style="flex:1;overflow:auto;padding:6px;font-size:12px"):
                    html.Pre("{{ error }}", id="error", v_show=("error",), style="color:#ff6b6b;white-space:pre-wrap")
                    html.Div("{{ status }}", id="status")
                    html.Div("{{ v.name }}: {{ v.ml }} mL", v_for="v in volumes", key="v.name", classes="segment-volume")
                    html.Div("{{ answer }}", id="answer", v_show=("answer",), style="margin:6px 0;font-weight:bold")
                    html.Img(id="chart", src=("chart_src",), v_show=("chart_src",), style="width:100%")
                    html.Div("Report: {{ report_path }}", id="report", v_show=("report_path",))
                    with html.Table(id="results", style="table-layout:fixed;width:100%;word-break:break-word"), html.Tr(v_for="row in results", key="row.name"):
                        html.Td("{{ row.name }}")
                        html.Td("{{ row.value }}")

    @staticmethod
    def _button(name: str, text: str, click: object, disabled: str) -> None:
        html.Button(text, id=f"btn-{name}", click=click, disabled=(disabled,), style=BUTTON_STYLE)


def run_web_app(data_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, reports: str | Path | None = None) -> None:
    """Serve the web app on ``host:port`` for the cases under ``data_dir`` (reports written to
    ``reports``, default ``data_dir/reports``); blocks until the server stops."""
    data = DataFolder(data_dir)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("Listening on %s: anyone who can reach this machine can open the cases under %s. "
                    "There is no login; put the app behind an authenticating proxy.", host, data.root)
    os.environ.setdefault("TRAME_WS_MAX_MSG_SIZE", str(MAX_UPLOAD_BYTES + 2**20))  # an upload arrives as one message
    app = IDHPredictorWebApp(data, Path(reports) if reports else data.root / "reports")
    app.server.start(host=host, port=port, open_browser=False, exec_mode="main")
