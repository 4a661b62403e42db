"""IDHPredictor: 3D Slicer module for non-invasive IDH status prediction of gliomas (research use).

Module / Widget / Logic / Test after Slicer's scripted-module template. The widget only binds
the GUI to a parameter node and calls the Logic; the Logic calls IDHPredictorLib, which holds
every computation and runs without Slicer too.
"""

import logging
import os
import sys
import tempfile
from typing import Annotated, Optional

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

# Running from a source checkout (Application Settings > Modules > additional path = IDHPredictor/):
# the library sits one folder up. In a built extension it is installed beside the module.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_SOURCE_ROOT, "IDHPredictorLib")) and _SOURCE_ROOT not in sys.path:
    sys.path.append(_SOURCE_ROOT)

RESEARCH_NOTE = _("Research use only, not for diagnosis. The models shipped with this extension were trained "
                  "on simulated (phantom) patients.")


class IDHPredictor(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("IDH Predictor")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["IDHPredictor developers"]
        self.parent.helpText = _("Segments a glioma on T1, T1c, T2 and FLAIR, lets you correct the mask, and predicts "
                                 "IDH mutation status from deep-learning radiomics and DSC perfusion. ") + RESEARCH_NOTE
        self.parent.acknowledgementText = _("Implements Li et al., Sci Rep 2017 (deep-learning radiomics) and Choi et "
                                            "al., Neuro-Oncology 2019 (DSC perfusion attention-LSTM).")


@parameterNodeWrapper
class IDHPredictorParameterNode:
    """Inputs of the workflow, saved with the scene."""

    t1Volume: vtkMRMLScalarVolumeNode
    t1cVolume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    tumourLabels: vtkMRMLLabelMapVolumeNode
    patientAge: Annotated[float, WithinRange(0.0, 120.0)] = 50.0


class IDHPredictorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """GUI: binds the .ui to the parameter node; every action is one Logic call."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/IDHPredictor.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.researchNoteLabel.text = RESEARCH_NOTE
        self.logic = IDHPredictorLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.ui.loadPhantomButton.connect("clicked(bool)", self.onLoadPhantom)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: Optional[IDHPredictorParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
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


class IDHPredictorLogic(ScriptedLoadableModuleLogic):
    """Scene-level operations; callable from Slicer's Python console for batch use."""

    ROLES = {"t1": "t1Volume", "t1ce": "t1cVolume", "t2": "t2Volume", "flair": "flairVolume"}

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self) -> IDHPredictorParameterNode:
        return IDHPredictorParameterNode(super().getParameterNode())

    def loadCase(self, caseDir: str, parameterNode: Optional[IDHPredictorParameterNode] = None) -> dict:
        """Read and validate a BraTS-layout case with IDHPredictorLib, push it into the scene.

        Returns {role: node}. Raises IDHPredictorLib.errors.InputError on bad input.
        """
        import sitkUtils
        from IDHPredictorLib.io.case import read_case

        case = read_case(caseDir, dsc=False)
        nodes = {}
        for role, image in case.images.items():
            nodes[role] = sitkUtils.PushVolumeToSlicer(image, name=f"{case.case_id}_{role}")
        if case.labels is not None:
            nodes["seg"] = sitkUtils.PushVolumeToSlicer(case.labels, name=f"{case.case_id}_seg",
                                                         className="vtkMRMLLabelMapVolumeNode")
        if parameterNode is not None:
            for role, attribute in self.ROLES.items():
                if role in nodes:
                    setattr(parameterNode, attribute, nodes[role])
            if "seg" in nodes:
                parameterNode.tumourLabels = nodes["seg"]
        if "flair" in nodes:
            slicer.util.setSliceViewerLayers(background=nodes["flair"], label=nodes.get("seg"), fit=True)
        logging.info("Loaded case %s from %s", case.case_id, caseDir)
        return nodes

    def generatePhantomCase(self, outputDir: str, seed: int = 0) -> str:
        """Simulate one small phantom patient into outputDir and return its case folder."""
        from IDHPredictorLib.phantom.cohort import PhantomOptions, case_id, generate_cohort

        cohort = generate_cohort(os.path.join(outputDir, "cohort"), PhantomOptions(cases=1, seed=seed, size="small"))
        return str(cohort / case_id(0))


class IDHPredictorTest(ScriptedLoadableModuleTest):
    """Self-test run by Slicer's test harness and from the Reload & Test button."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_LoadPhantomCase()

    def test_LoadPhantomCase(self) -> None:
        self.delayDisplay("Generating and loading a phantom case")
        logic = IDHPredictorLogic()
        caseDir = logic.generatePhantomCase(tempfile.mkdtemp(prefix="IDHPredictorTest-"), seed=1)
        parameterNode = logic.getParameterNode()
        nodes = logic.loadCase(caseDir, parameterNode)
        self.assertEqual(sorted(nodes), ["flair", "seg", "t1", "t1ce", "t2"])
        self.assertIs(parameterNode.flairVolume, nodes["flair"])
        labels = slicer.util.arrayFromVolume(nodes["seg"])
        self.assertTrue(set(labels.ravel().tolist()) <= {0, 1, 2, 4} and labels.any())
        self.delayDisplay("Test passed")
