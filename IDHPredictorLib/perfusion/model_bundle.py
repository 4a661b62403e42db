"""Perfusion model bundles (attention-LSTM weights + model.json) and single-case prediction."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..bundle import read_bundle, write_bundle
from ..catalog import default_model
from ..errors import InputError
from ..io.dsc import DscSeries
from ..quality import QualityReport
from ..validation.calibration import PlattCalibrator
from . import curves as curve_grid
from .analysis import PerfusionAnalysis
from .curves import PatientCurves
from .network import AttentionLSTM, LstmArchitecture

KIND = "perfusion"
WEIGHTS = "weights.pt"
DEFAULT_PERFUSION_MODEL = default_model("perfusion")  # catalog.json names it
GRID = {"channels": list(curve_grid.CHANNELS), "grid_step_s": curve_grid.GRID_STEP_S,
        "pre_bolus_s": curve_grid.PRE_BOLUS_S, "grid_frames": curve_grid.GRID_FRAMES, "windows": curve_grid.WINDOWS}


def save_perfusion_model(folder: str | Path, model: AttentionLSTM, metadata: dict) -> Path:
    """Write the bundle: architecture, input grid and metadata in model.json, weights in weights.pt."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    record = {"architecture": model.architecture.as_dict(), "input": GRID,
              "note": "Trained on simulated patients (digital phantom); for research, not diagnosis.", **metadata}
    return write_bundle(folder, KIND, record, {WEIGHTS: lambda path: torch.save(state, path)})


def load_perfusion_model(folder: str | Path) -> tuple[AttentionLSTM, dict]:
    """The network and its model.json; a bundle made for another input grid is refused."""
    folder = Path(folder)
    record = read_bundle(folder, KIND)
    if record.get("input") != GRID:
        raise InputError(folder / "model.json", "was made for another curve grid or channel order",
                         "Re-train it with this version (idh-predictor perfusion --save-model)")
    if "calibration" not in record:
        raise InputError(folder / "model.json", "has no probability calibration (it predates calibrated perfusion models)",
                         "Re-train it with this version (idh-predictor perfusion --save-model)")
    model = AttentionLSTM(LstmArchitecture(**record["architecture"]))
    try:
        model.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
        raise InputError(folder / WEIGHTS, f"weights do not load ({str(error).splitlines()[0][:120]})",
                         "Re-install or re-train the bundle") from error
    return model.eval(), record


@dataclass
class PerfusionPrediction:
    """One patient's perfusion prediction with what the displays need (curves, rCBV map)."""

    result: dict[str, object]
    analysis: PerfusionAnalysis
    curves: PatientCurves
    attention: np.ndarray  # (grid frames,) attention over the full curve


def predict_perfusion_series(dsc: DscSeries, labels: sitk.Image, brain: sitk.Image, case_id: str,
                             bundle: str | Path = DEFAULT_PERFUSION_MODEL,
                             aif_voxels: np.ndarray | None = None) -> PerfusionPrediction:
    """Perfusion probability, temporal pattern and rCBV statistics from in-memory images:
    ``labels`` (BraTS 1/2/4) and ``brain`` (skull-stripped structural) on one grid, the AIF
    automatic or at ``aif_voxels`` ((z, y, x) DSC indices)."""
    from .analysis import analyse_dsc
    from .curves import patient_curves, sliding_windows
    from .patterns import curve_segments, full_curve_attention, temporal_pattern
    from .training import predict_patients

    model, record = load_perfusion_model(bundle)
    analysis = analyse_dsc(dsc, labels, brain, aif_voxels)
    curves = patient_curves(analysis)
    network_output, attention = predict_patients(model, sliding_windows(curves.curves)[None])
    probability = PlattCalibrator.from_dict(record["calibration"]).predict_proba(network_output)
    full = full_curve_attention(attention[0])
    number, pair = temporal_pattern(full, curve_segments(curves.curves[curve_grid.WHOLE_CHANNEL], curves.grid_s))
    result = {"case_id": case_id, "idh_mutant_probability": float(probability[0]),
              "predicted_class": "mutant" if probability[0] >= 0.5 else "wildtype",
              "network_output": float(network_output[0]), "calibration": record["calibration"],
              "temporal_pattern": f"TP{number}", "pattern_segments": list(pair), "attention": np.round(full, 5).tolist(),
              "rcbv": analysis.statistics, "aif_voxels_zyx": analysis.aif.voxels.tolist(), "aif_method": analysis.aif.method,
              "channels_present": dict(zip(curve_grid.CHANNELS, curves.present)),
              # the verdicts on the series hold for the rCBV and for the LSTM input curves alike
              "dsc_quality": analysis.quality.as_dict(), "lstm_input_flagged": bool(analysis.quality.problems()),
              "model": str(bundle), "model_metrics": record.get("metrics", {}), "note": record.get("note", "")}
    return PerfusionPrediction(result, analysis, curves, full)


def predict_perfusion(case_dir: str | Path, bundle: str | Path = DEFAULT_PERFUSION_MODEL,
                      heatmap: Path | None = None, rcbv_map: Path | None = None,
                      labels: sitk.Image | None = None) -> dict[str, object]:
    """``predict_perfusion_series`` for a case folder (and the heat map PNG, the rCBV map on the
    DSC grid). The tumour labels are ``labels`` when given (e.g. the CNN's, on any grid: resampled
    nearest neighbour), else the case's ``_seg``."""
    from ..io.images import labels_on_grid
    from .analysis import read_perfusion_case
    from .patterns import attention_heatmap

    case = read_perfusion_case(case_dir, labels=labels is None)
    if labels is not None:
        labels = labels_on_grid(labels, case.reference)
    prediction = predict_perfusion_series(case.dsc, case.labels if labels is None else labels, case.reference,
                                          case.case_id, bundle)
    if rcbv_map is not None:
        from ..io.images import write_image

        write_image(prediction.analysis.rcbv_image(), rcbv_map)
    if heatmap is not None:
        curves = prediction.curves
        attention_heatmap(curves.curves, prediction.attention, curves.grid_s, heatmap,
                          f"{case.case_id}: {prediction.result['temporal_pattern']}", curves.present)
    return {**prediction.result, "heatmap": str(heatmap) if heatmap else None,
            "rcbv_map": str(rcbv_map) if rcbv_map else None}


def describe_perfusion(result: dict[str, object]) -> str:
    """One display line for a perfusion prediction (the Slicer panel): the calibrated probability
    and class, the temporal pattern and rCBV, and the bundle's validation AUC, Brier and ECE with
    what they were measured on."""
    from ..validation.report import metric_cell

    rcbv = dict(result["rcbv"])
    line = (f"IDH-mutant probability {result['idh_mutant_probability']:.2f} (calibrated; {result['predicted_class']}); "
            f"temporal pattern {result['temporal_pattern']}; rCBV mean {rcbv['rcbv_mean']:.2f}, 95th pct {rcbv['rcbv_p95']:.2f}")
    auc = dict(dict(result.get("model_metrics") or {}).get("cv_simulated") or {}).get("Attention-LSTM", {}).get("auc")
    calibration = dict(result.get("calibration") or {}).get("cv_simulated")
    if auc and calibration:
        line += (f". Model validation ({calibration['patients']} simulated patients, 5-fold CV, reference masks): "
                 f"AUC {metric_cell(auc)}, Brier {calibration['brier']:.3f}, ECE {calibration['ece']:.3f}")
    problems = QualityReport.from_dict(dict(result.get("dsc_quality") or {})).problems()
    if problems:
        line += ". DSC quality, for the rCBV and the LSTM input alike: " + "; ".join(c.line() for c in problems)
    return line

