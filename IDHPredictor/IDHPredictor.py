"""IDHPredictor: 3D Slicer module for non-invasive IDH status prediction of gliomas (research use).

Module / Widget / Logic / Test after Slicer's scripted-module template. The widget binds the GUI
to a parameter node and calls the Logic; the Logic calls IDHPredictorLib (scene_workflow and the
MRML bridge), which holds every computation and also runs without Slicer.
"""

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional, Union

import qt
import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLSequenceNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

# From a source checkout (Application Settings > Modules > additional path = IDHPredictor/) the
# library sits one folder up; in a built extension it is installed beside the module.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_SOURCE_ROOT, "IDHPredictorLib")) and _SOURCE_ROOT not in sys.path:
    sys.path.append(_SOURCE_ROOT)

RESEARCH_NOTE = _("Research use only, not for diagnosis. The models shipped with this extension were trained "
                  "on simulated (phantom) patients.")
log = logging.getLogger(__name__)
ROLES = {"t1": "t1Volume", "t1ce": "t1cVolume", "t2": "t2Volume", "flair": "flairVolume"}


class IDHPredictor(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("IDH Predictor")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["IDHPredictor developers"]
        self.parent.helpText = _("Segments a glioma on T1, T1c, T2 and FLAIR, lets you correct the mask in the Segment "
                                 "Editor, and predicts IDH mutation status from deep-learning radiomics and DSC "
                                 "perfusion. ") + RESEARCH_NOTE
        self.parent.acknowledgementText = _("Implements Li et al., Sci Rep 2017 (deep-learning radiomics) and Choi et "
                                            "al., Neuro-Oncology 2019 (DSC perfusion attention-LSTM).")


def _modelChoices(kind: str) -> list:
    """The model menu: automatic (the catalogue's default for the case) first, then every catalogue
    entry of ``kind`` (the catalogue module needs only the standard library)."""
    from IDHPredictorLib.catalog import AUTOMATIC, entries

    return [AUTOMATIC, *(entry.id for entry in entries(kind, validate=False))]


SEGMENTATION_MODELS, DLR_MODELS, PERFUSION_MODELS = (_modelChoices(kind) for kind in ("segmentation", "dlr", "perfusion"))


@parameterNodeWrapper
class IDHPredictorParameterNode:
    """Inputs and settings of the workflow, saved with the scene. Models are chosen from
    Resources/models/catalog.json; automatic means the default for the selected modalities."""

    t1Volume: vtkMRMLScalarVolumeNode
    t1cVolume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    dscSeries: Union[vtkMRMLSequenceNode, vtkMRMLScalarVolumeNode, None]  # None: the wrapper's default must be writable
    patientAge: Annotated[float, WithinRange(0.0, 120.0)] = 50.0
    segmentationModel: Annotated[str, Choice(SEGMENTATION_MODELS)] = SEGMENTATION_MODELS[0]
    dlrModel: Annotated[str, Choice(DLR_MODELS)] = DLR_MODELS[0]
    perfusionModel: Annotated[str, Choice(PERFUSION_MODELS)] = PERFUSION_MODELS[0]
    tumourSegmentation: vtkMRMLSegmentationNode
    preprocessing: Annotated[str, Choice(["auto", "always", "never"])] = "auto"
    automaticAif: bool = True
    aifPoints: vtkMRMLMarkupsFiducialNode
    repetitionTime: Annotated[float, WithinRange(0.0, 10.0)] = 0.0
    echoTime: Annotated[float, WithinRange(0.0, 200.0)] = 0.0


class IDHPredictorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """GUI: binds the .ui to the parameter node and shows what the library's JobController reports
    (it is the controller's JobView); every action is one Logic call. ``logic`` can be injected."""

    def __init__(self, parent=None, logic: Optional["IDHPredictorLogic"] = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = logic
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._controller = None
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.timeout.connect(self.onPollJob)

    def setup(self) -> None:
        from IDHPredictorLib.job_controller import JobController

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/IDHPredictor.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.researchNoteLabel.text = RESEARCH_NOTE
        self.logic = self.logic or IDHPredictorLogic()
        self._controller = JobController(slicer.mrmlScene, self)
        self._actions = {"load": (self.ui.loadCaseButton, self.onLoadCase), "phantom": (self.ui.loadPhantomButton, self.onLoadPhantom),
                         "segment": (self.ui.segmentButton, self.onSegment), "correct": (self.ui.correctButton, self.onCorrect),
                         "dlr": (self.ui.dlrButton, self.onDlr), "perfusion": (self.ui.perfusionButton, self.onPerfusion),
                         "fusion": (self.ui.fusionButton, self.onFusion), "export": (self.ui.exportButton, self.onExport),
                         "cancel": (self.ui.cancelButton, self.onCancel)}
        for button, slot in self._actions.values():
            button.connect("clicked(bool)", slot)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.show_busy(None)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onCancel()
        self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        """Leaving the module (e.g. for the Segment Editor): the GUI lets go of the parameter node,
        which stays selected (as in the template); a running job goes on and lands on its own case."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.onCancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: Optional[IDHPredictorParameterNode]) -> None:
        if self._parameterNode and self._parameterNodeGuiTag:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def onLoadCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the case."), waitCursor=True):
            self.logic.loadCase(self.ui.caseDirectoryButton.directory, self._parameterNode)

    def onLoadPhantom(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to generate the phantom case."), waitCursor=True):
            caseDir = self.logic.generatePhantomCase(tempfile.mkdtemp(prefix="IDHPredictorPhantom-"))
            self.logic.loadCase(caseDir, self._parameterNode)

    def onSegment(self) -> None:
        if self._parameterNode.tumourSegmentation and not slicer.util.confirmOkCancelDisplay(
                _("Replace the current tumour segmentation (and any corrections made to it)?")):
            return
        self._startJob(lambda: self.logic.startSegmentation(self._parameterNode), _("Segmenting..."))

    def onDlr(self) -> None:
        self._startJob(lambda: self.logic.startDlr(self._parameterNode), _("Computing the DLR prediction..."))

    def _startJob(self, starter, message: str) -> None:
        self._ensureDependencies()
        with slicer.util.tryWithErrorDisplay(_("Failed to start the computation."), waitCursor=True):
            self._controller.start(starter, message)
            self._timer.start()

    def onPollJob(self) -> None:
        self._controller.poll()
        if not self._controller.busy:
            self._timer.stop()

    def onCancel(self) -> None:
        if self._controller is not None:
            self._controller.cancel()

    # JobView: what the controller reports
    def show_busy(self, message: Optional[str]) -> None:
        running = message is not None
        self.ui.progressBar.visible = self.ui.cancelButton.visible = running
        for action, (button, _slot) in self._actions.items():
            button.enabled = self._controller.allows(action)
        if running:
            self.ui.progressBar.maximum, self.ui.progressBar.value = 0, 0
            self.ui.statusLabel.text = message

    def show_progress(self, progress) -> None:
        self.ui.progressBar.maximum, self.ui.progressBar.value = progress.total, progress.done
        self.ui.statusLabel.text = progress.description

    def show_result(self, result, case) -> None:
        """Show a finished job's result; the parameter node follows only if its case is still selected."""
        from IDHPredictorLib.case_jobs import DlrResult, SegmentationResult

        selected = self._parameterNode is not None and self.logic.selectedCaseId(self._parameterNode) == case.case_id
        self.ui.statusLabel.text = _("{kind} finished for {case}.").format(kind=result.kind, case=case.case_id)
        if not selected:
            return
        if isinstance(result, SegmentationResult):
            self._parameterNode.tumourSegmentation = case.segmentation
            self.logic.show(case)
            self._showQuality(result.record)
        elif isinstance(result, DlrResult):
            self.logic.updateResultsTable(self._parameterNode)
            self._showDlr(result.record)
            self._showInLayout(case.case_id)

    def show_error(self, message: str, details: str) -> None:
        self.ui.statusLabel.text = message
        if details:
            slicer.util.errorDisplay(message, detailedText=details)

    def onPerfusion(self) -> None:
        self._ensureDependencies()
        with slicer.util.tryWithErrorDisplay(_("Perfusion analysis failed."), waitCursor=True):
            from IDHPredictorLib.perfusion.model_bundle import describe_perfusion

            result = self.logic.computePerfusion(self._parameterNode)
            self._showInLayout(result.case_id)
            self.ui.perfusionResultLabel.text = describe_perfusion(result.record)

    def onFusion(self) -> None:
        self._ensureDependencies()
        with slicer.util.tryWithErrorDisplay(_("The combined answer failed."), waitCursor=True):
            from IDHPredictorLib.fusion.bundle import describe_fusion

            self.ui.fusionResultLabel.text = describe_fusion(self.logic.computeFusion(self._parameterNode).record)

    def _ensureDependencies(self) -> None:
        """Install missing packages on first use, asking the user first (so no wait cursor over the
        dialogs); a refusal or failure is shown and ends the action (tryWithErrorDisplay re-raises)."""
        with slicer.util.tryWithErrorDisplay(_("Required Python packages are missing.")):
            self.logic.ensureDependencies()

    def _showInLayout(self, caseId: str) -> None:
        """Show the perfusion chart (curves over the attention band), the rCBV map over the
        anatomy and the results table."""
        # ShowChartInLayout keeps this layout; PropagateTableSelection only fills existing table views
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
        chart = slicer.mrmlScene.GetFirstNode(f"{caseId} perfusion", "vtkMRMLPlotChartNode")
        if chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chart)
        rcbv = slicer.mrmlScene.GetFirstNode(f"{caseId} rCBV", "vtkMRMLScalarVolumeNode")
        if rcbv is not None:
            slicer.util.setSliceViewerLayers(foreground=rcbv, foregroundOpacity=0.5)
        table = slicer.mrmlScene.GetFirstNode(f"{caseId} results", "vtkMRMLTableNode")
        if table is not None:
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()

    def onCorrect(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot open the Segment Editor."), waitCursor=True):
            self.logic.openSegmentEditor(self._parameterNode)

    def onExport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to export the report."), waitCursor=True):
            folder = self.logic.exportReport(self._parameterNode, self.ui.reportDirectoryButton.directory)
            self.ui.statusLabel.text = _("Report written to {folder}").format(folder=folder)

    def _showQuality(self, quality: dict) -> None:
        """The quality verdict and every warning or failure, in the Segmentation panel."""
        lines = [line for name, line in quality.items() if name not in ("verdict", "input", "steps") and "[PASS]" not in line]
        self.ui.qualityLabel.text = "\n".join([f"{quality['verdict']}; input {quality['input']}", *lines])

    def _showDlr(self, result: dict) -> None:
        from IDHPredictorLib.dlr.predict import describe_prediction

        lines = describe_prediction(result)
        self.ui.dlrResultLabel.text = f"{lines['prediction']}; {lines['validation']}"
        self.ui.dlrFeaturesLabel.text = lines["features"]


class IDHPredictorLogic(ScriptedLoadableModuleLogic):
    """Scene-level operations, callable from Slicer's Python console for batch use:
    ``IDHPredictorLogic().processCase(caseDir, outputDir)`` or ``.processCohort(cohortDir, outputDir)``.
    A case's results live on its nodes (saved with the scene), not in this object."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._dependenciesChecked = False

    def getParameterNode(self) -> IDHPredictorParameterNode:
        return IDHPredictorParameterNode(super().getParameterNode())

    def ensureDependencies(self) -> None:
        """Install Resources/requirements.txt and torch on the first Apply (never at import)."""
        if self._dependenciesChecked:
            return
        requirements = Path(__file__).parent / "Resources" / "requirements.txt"
        try:
            import slicer.packaging as packaging  # Slicer 5.12+
            packaging.pip_ensure(packaging.load_requirements(requirements), requester="IDH Predictor")
        except ImportError:
            slicer.util.pip_install(["-r", str(requirements)])
        if importlib.util.find_spec("torch") is None:
            import PyTorchUtils  # from the PyTorch extension (EXTENSION_DEPENDS)
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
                raise RuntimeError(_("PyTorch is required. Install it from the PyTorch Utils module."))
        self._dependenciesChecked = True

    def sceneCase(self, parameterNode: IDHPredictorParameterNode):
        """The selected case: its nodes and the results saved on them."""
        from IDHPredictorLib.scene_workflow import scene_case_from_nodes

        volumes = {role: getattr(parameterNode, name) for role, name in ROLES.items()}
        if not any(volumes.values()):
            raise ValueError(_("Select the input volumes first (at least FLAIR)."))
        return scene_case_from_nodes(volumes, parameterNode.tumourSegmentation, parameterNode.dscSeries)

    def selectedCaseId(self, parameterNode: IDHPredictorParameterNode) -> Optional[str]:
        return self.sceneCase(parameterNode).case_id if any(getattr(parameterNode, n) for n in ROLES.values()) else None

    def loadCase(self, caseDir: str, parameterNode: Optional[IDHPredictorParameterNode] = None):
        """Read and validate a BraTS-layout case with IDHPredictorLib and add it to the scene."""
        from IDHPredictorLib.scene_workflow import load_case

        case = load_case(slicer.mrmlScene, caseDir)
        if parameterNode is not None:
            for role, name in ROLES.items():
                setattr(parameterNode, name, case.volumes.get(role))
            parameterNode.tumourSegmentation, parameterNode.dscSeries = case.segmentation, case.dsc
        self.show(case)
        log.info("Loaded case %s from %s", case.case_id, caseDir)
        return case

    def show(self, case) -> None:
        """The case's FLAIR (or reference volume) in the slice views, fitted."""
        background = case.volumes.get("flair") or case.reference
        slicer.util.setSliceViewerLayers(background=background, fit=True)

    def generatePhantomCase(self, outputDir: str, seed: int = 0) -> str:
        """Simulate one small phantom patient into outputDir and return its case folder."""
        from IDHPredictorLib.phantom.cohort import PhantomOptions, case_id, generate_cohort

        cohort = generate_cohort(os.path.join(outputDir, "cohort"), PhantomOptions(cases=1, seed=seed, size="small"))
        return str(cohort / case_id(0))

    @staticmethod
    def _model(choice: str) -> Optional[str]:
        """The parameter node's model choice for the library (which reads ``automatic`` itself)."""
        return choice or None

    def startSegmentation(self, parameterNode: IDHPredictorParameterNode):
        """A CaseJob segmenting the selected case in a background PythonSlicer process."""
        from IDHPredictorLib.case_jobs import start_segmentation

        return start_segmentation(self.sceneCase(parameterNode), self._model(parameterNode.segmentationModel),
                                  parameterNode.preprocessing, python=shutil.which("PythonSlicer"))

    def startDlr(self, parameterNode: IDHPredictorParameterNode):
        """A CaseJob predicting DLR from the selected case's current (corrected) mask."""
        from IDHPredictorLib.case_jobs import start_dlr

        return start_dlr(self.sceneCase(parameterNode), self._model(parameterNode.dlrModel), parameterNode.preprocessing,
                         python=shutil.which("PythonSlicer"))

    def segment(self, parameterNode: IDHPredictorParameterNode):
        """Segment in this process (batch use and self-test); returns the segmentation node."""
        from IDHPredictorLib.catalog import resolve_model
        from IDHPredictorLib.scene_workflow import segment

        case = self.sceneCase(parameterNode)
        model = resolve_model("segmentation", self._model(parameterNode.segmentationModel), case.volumes)
        parameterNode.tumourSegmentation = segment(slicer.mrmlScene, case, model, preprocess=parameterNode.preprocessing)
        return parameterNode.tumourSegmentation

    def openSegmentEditor(self, parameterNode: IDHPredictorParameterNode) -> None:
        """Open the Segment Editor on the tumour segmentation over the FLAIR (or reference) volume."""
        case = self.sceneCase(parameterNode)
        if case.segmentation is None:
            raise ValueError(_("Run the segmentation first, or select a tumour segmentation."))
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(case.segmentation)
        editor.setSourceVolumeNode(case.volumes.get("flair") or case.reference)

    def computeDlr(self, parameterNode: IDHPredictorParameterNode) -> dict:
        """DLR prediction in this process (batch use and self-test)."""
        from IDHPredictorLib.catalog import resolve_model
        from IDHPredictorLib.scene_workflow import compute_dlr

        result = compute_dlr(self.sceneCase(parameterNode), resolve_model("dlr", self._model(parameterNode.dlrModel)),
                             preprocess=parameterNode.preprocessing)
        self.updateResultsTable(parameterNode)
        return result

    def computePerfusion(self, parameterNode: IDHPredictorParameterNode):
        """PerfusionResult: prediction, curve chart with attention band and rCBV map (numpy work, seconds)."""
        from IDHPredictorLib.case_jobs import compute_perfusion

        aif = None if parameterNode.automaticAif else parameterNode.aifPoints
        if not parameterNode.automaticAif and aif is None:
            raise ValueError(_("Place AIF points (markups) on an artery, or tick automatic AIF."))
        result = compute_perfusion(slicer.mrmlScene, self.sceneCase(parameterNode), self._model(parameterNode.perfusionModel),
                                   aif_markups=aif, repetition_time_s=parameterNode.repetitionTime or None,
                                   echo_time_s=parameterNode.echoTime / 1000.0 if parameterNode.echoTime else None,
                                   preprocess=parameterNode.preprocessing)
        self.updateResultsTable(parameterNode)
        return result

    def computeFusion(self, parameterNode: IDHPredictorParameterNode):
        """FusionResult: calibrated probability, prediction set and inputs used, from the shipped
        fusion bundle's components, the current segmentation and the patient's age."""
        from IDHPredictorLib.case_jobs import compute_fusion

        result = compute_fusion(slicer.mrmlScene, self.sceneCase(parameterNode), parameterNode.patientAge,
                                preprocess=parameterNode.preprocessing)
        self.updateResultsTable(parameterNode)
        return result

    def updateResultsTable(self, parameterNode: IDHPredictorParameterNode):
        """The patient's results table node (one per patient, updated in place)."""
        from IDHPredictorLib.scene_workflow import results_table

        return results_table(slicer.mrmlScene, self.sceneCase(parameterNode), parameterNode.patientAge)

    def exportReport(self, parameterNode: IDHPredictorParameterNode, outputDir: str) -> str:
        """Write ``outputDir/<case id>``: result.json, label map and PNGs."""
        from IDHPredictorLib.scene_workflow import export_report

        case = self.sceneCase(parameterNode)
        return str(export_report(case, Path(outputDir) / case.case_id))

    def processCase(self, caseDir: str, outputDir: str, **settings) -> dict:
        """Batch: load, segment, DLR, perfusion (with DSC), results table, report folder."""
        from IDHPredictorLib.scene_workflow import process_case

        return process_case(slicer.mrmlScene, caseDir, outputDir, settings)

    def processCohort(self, cohortDir: str, outputDir: str, **settings) -> list:
        """Batch over every case folder of a cohort; writes outputDir/summary.json."""
        from IDHPredictorLib.scene_workflow import process_cohort

        return process_cohort(slicer.mrmlScene, cohortDir, outputDir, settings,
                              lambda done, total: log.info("IDHPredictor: %d/%d cases", done, total))


class IDHPredictorTest(ScriptedLoadableModuleTest):
    """Self-test run by Slicer's test harness and from the Reload & Test button: a small phantom
    case through load, segmentation, a Segment-Editor-like edit, DLR, perfusion and export."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_WholeWorkflow()

    def test_WholeWorkflow(self) -> None:
        import numpy as np

        self.delayDisplay("Generating and loading a phantom case")
        logic = IDHPredictorLogic()
        workDir = tempfile.mkdtemp(prefix="IDHPredictorTest-")
        parameterNode = logic.getParameterNode()
        case = logic.loadCase(logic.generatePhantomCase(workDir, seed=1), parameterNode)
        self.assertEqual(sorted(case.volumes), ["flair", "t1", "t1ce", "t2"])
        self.assertIs(parameterNode.flairVolume, case.volumes["flair"])

        self.delayDisplay("Segmenting")
        segmentation = logic.segment(parameterNode)
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 3)
        dlr = logic.computeDlr(parameterNode)
        perfusion = logic.computePerfusion(parameterNode).record
        self.assertTrue(0.0 <= dlr["idh_mutant_probability"] <= 1.0)
        fused = logic.computeFusion(parameterNode)
        self.assertEqual(fused.record["inputs_used"], ["DLR", "perfusion LSTM", "age"])
        self.assertIn(fused.prediction_set, ("mutant", "wildtype", "uncertain", "empty"))

        self.delayDisplay("Erasing half of the enhancing segment, as an editor would")
        segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Enhancing tumour")
        array = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, case.reference)
        zs = np.flatnonzero(array.any(axis=(1, 2)))
        self.assertGreater(len(zs), 1)
        array[zs[len(zs) // 2]:] = 0
        slicer.util.updateSegmentBinaryLabelmapFromArray(array, segmentation, segmentId, case.reference)
        self.assertNotEqual(logic.computePerfusion(parameterNode).record["rcbv"], perfusion["rcbv"])
        self.assertNotEqual(logic.computeDlr(parameterNode)["decision_value"], dlr["decision_value"])

        report = logic.exportReport(parameterNode, os.path.join(workDir, "report"))
        self.assertTrue(os.path.exists(os.path.join(report, "result.json")))
        self.delayDisplay("Test passed")
