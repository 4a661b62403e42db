"""Segmentation model bundles: save, load (with clear errors) and pick one by available modalities."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from ..bundle import read_bundle, write_bundle
from ..catalog import MODELS_DIR, default_model
from ..errors import InputError
from .network import Architecture, SegmentationCNN

KIND = "segmentation"
WEIGHTS = "weights.pt"
DEFAULT_MODELS = MODELS_DIR  # the shipped bundles (Resources/models; catalog.json names the defaults)


@dataclass
class SegmentationModel:
    """A loaded bundle: the network (the paper's 2-D CNN or a 3-D ``volumetric`` network), its
    input modalities and its model.json record."""

    network: torch.nn.Module
    modalities: tuple[str, ...]
    record: dict

    @property
    def is_volumetric(self) -> bool:
        return not isinstance(self.network, SegmentationCNN)

    @property
    def min_enhancing_ml(self) -> float:
        """Enhancing regions smaller than this become core (``postprocess``); 0 for bundles without
        a ``postprocessing`` record."""
        return float(self.record.get("postprocessing", {}).get("min_enhancing_ml", 0.0))


def save_model(folder: str | Path, network: SegmentationCNN, modalities: tuple[str, ...], metadata: dict) -> Path:
    """Write a bundle: architecture and modalities in model.json, the state dict in weights.pt."""
    record = {"architecture": network.architecture.as_dict(), "modalities": list(modalities), **metadata}
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    return write_bundle(folder, KIND, record, {WEIGHTS: lambda path: torch.save(state, path)})


def save_volumetric_model(folder: str | Path, network: torch.nn.Module, architecture: object,
                          modalities: tuple[str, ...], metadata: dict) -> Path:
    """Write a 3-D network's bundle; weights in float16 (half the size, no measurable change in labels)."""
    record = {"architecture": architecture.as_dict(), "modalities": list(modalities), **metadata}
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in network.state_dict().items()}
    return write_bundle(folder, KIND, record, {WEIGHTS: lambda path: torch.save(state, path)})


def _build(record: dict) -> torch.nn.Module:
    """The network a record's architecture describes (2-D CNN unless its ``type`` says otherwise)."""
    fields = dict(record["architecture"])
    if fields.get("type", "li2017") == "li2017":
        fields.pop("type", None)
        network: torch.nn.Module = SegmentationCNN(Architecture(**fields))
    else:
        from .volumetric import VolumetricArchitecture, build_network

        network = build_network(VolumetricArchitecture(**fields))
    return network


def load_model(folder: str | Path, device: torch.device | str = "cpu") -> SegmentationModel:
    """Load a bundle; a corrupt or mismatched one raises ``InputError`` naming it."""
    folder = Path(folder)
    record = read_bundle(folder, KIND)
    try:
        network = _build(record)
        modalities = tuple(record["modalities"])
        in_channels = record["architecture"]["in_channels"]
    except (KeyError, TypeError) as error:
        raise InputError(folder / "model.json", f"has no valid architecture/modalities ({error})",
                         "Re-train the bundle") from error
    if len(modalities) != in_channels:
        raise InputError(folder / "model.json", f"{len(modalities)} modalities for {in_channels} channels",
                         "Re-train the bundle")
    try:
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
        detail = str(error).strip().splitlines()[0][:160]
        raise InputError(folder / WEIGHTS, f"weights do not load into the recorded architecture ({detail})",
                         "The bundle is corrupt or mixed up; re-install or re-train it") from error
    network.to(device).eval()
    return SegmentationModel(network, modalities, record)


def load_filter_bank(folder: str | Path) -> SegmentationModel:
    """A bundle whose 2-D CNN layers DLR reads as descriptors (Li et al. 2017); a 3-D network is
    refused by name, since its layers are not the paper's."""
    model = load_model(folder)
    if model.is_volumetric:
        raise InputError(folder, "is a 3-D segmentation network; DLR reads the layers of the paper's 2-D CNN",
                         "Pass a 2-D bundle as the DLR network, e.g. Resources/models/segmentation-flair-t1ce")
    return model


def default_bundle_for(available: set[str]) -> Path:
    """The catalogue's default segmentation bundle for the modalities the case has (FLAIR + T1c
    when it has both, else FLAIR)."""
    return default_model("segmentation", available)


def find_case_roles(case_dir: str | Path) -> set[str]:
    """Modalities present in a case folder (for choosing a default bundle)."""
    from ..io.case import MODALITIES, find_case_files

    _, files = find_case_files(case_dir)
    return {m for m in MODALITIES if m in files}


def record_input_statistics(folder: str | Path, training_cases: list[Path], source: str) -> dict:
    """Store in a bundle the intensity statistics of (some of) its training cases, for the
    input check of ``segmentation.checks`` (bundles trained before it existed lack them)."""
    from ..bundle import update_bundle_record
    from ..io.case import read_case
    from .checks import input_statistics, intensity_quantiles
    from .data import network_input

    modalities = tuple(read_bundle(folder, KIND)["modalities"])
    quantiles = [intensity_quantiles(network_input(read_case(case, modalities, labels=False, dsc=False), modalities,
                                                   with_labels=False)) for case in training_cases]
    statistics = input_statistics(quantiles, modalities, source)
    update_bundle_record(folder, lambda record: record.__setitem__("input_statistics", statistics))
    return statistics
