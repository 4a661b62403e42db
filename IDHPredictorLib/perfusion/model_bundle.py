"""Perfusion model bundles (attention-LSTM weights + model.json) and single-case prediction."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..bundle import read_bundle, write_bundle
from ..errors import InputError
from ..segmentation.model_bundle import DEFAULT_MODELS
from . import curves as curve_grid
from .network import AttentionLSTM, LstmArchitecture

KIND = "perfusion"
WEIGHTS = "weights.pt"
DEFAULT_PERFUSION_MODEL = DEFAULT_MODELS / "perfusion-lstm"
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
    model = AttentionLSTM(LstmArchitecture(**record["architecture"]))
    try:
        model.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
        raise InputError(folder / WEIGHTS, f"weights do not load ({str(error).splitlines()[0][:120]})",
                         "Re-install or re-train the bundle") from error
    return model.eval(), record


def predict_perfusion(case_dir: str | Path, bundle: str | Path = DEFAULT_PERFUSION_MODEL,
                      heatmap: Path | None = None, rcbv_map: Path | None = None) -> dict[str, object]:
    """Perfusion probability, temporal pattern, rCBV statistics (and the heat map PNG, the rCBV
    map on the DSC grid) of one case."""
    from .analysis import analyse_dsc, read_perfusion_case
    from .curves import patient_curves, sliding_windows
    from .patterns import attention_heatmap, curve_segments, full_curve_attention, temporal_pattern
    from .training import predict_patients

    model, record = load_perfusion_model(bundle)
    case = read_perfusion_case(case_dir)
    analysis = analyse_dsc(case.dsc, case.labels, case.reference)
    curves = patient_curves(analysis)
    probability, attention = predict_patients(model, sliding_windows(curves.curves)[None])
    full = full_curve_attention(attention[0])
    number, pair = temporal_pattern(full, curve_segments(curves.curves[curve_grid.WHOLE_CHANNEL], curves.grid_s))
    if rcbv_map is not None:
        from ..io.images import write_image

        write_image(analysis.rcbv_image(), rcbv_map)
    if heatmap is not None:
        attention_heatmap(curves.curves, full, curves.grid_s, heatmap, f"{case.case_id}: TP{number}", curves.present)
    return {"case_id": case.case_id, "idh_mutant_probability": float(probability[0]),
            "predicted_class": "mutant" if probability[0] > 0.5 else "wildtype",
            "temporal_pattern": f"TP{number}", "pattern_segments": list(pair), "attention": np.round(full, 5).tolist(),
            "rcbv": analysis.statistics, "aif_voxels_zyx": analysis.aif.voxels.tolist(),
            "channels_present": dict(zip(curve_grid.CHANNELS, curves.present)), "heatmap": str(heatmap) if heatmap else None,
            "rcbv_map": str(rcbv_map) if rcbv_map else None,
            "model": str(bundle), "model_metrics": record.get("metrics", {}), "note": record.get("note", "")}
