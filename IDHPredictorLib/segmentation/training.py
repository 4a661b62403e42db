"""Train the segmentation CNN on a cohort: balanced patch sampling, domain randomisation, SGD
with momentum, seeded, validation Dice per epoch, checkpoint/resume, CPU or GPU automatically."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.case import read_case
from ..io.cohort import case_folders, cohort_record
from .augment import appearance_setting, randomise
from .checks import input_statistics, intensity_quantiles
from .data import NetworkInput, extract_patches, network_input, pad_for_patches, tissue_map
from .evaluation import region_metrics
from .inference import _box_labels, choose_device
from .model_bundle import save_model
from .network import CLASS_TO_LABEL, PATCH, STRIDE, Architecture, SegmentationCNN

# Training runs on 65x65 tiles: the fully convolutional network scores a 9x9 lattice of
# 33x33 patches per tile (stride 4), sharing the convolutions between them: ~20x more
# supervised patches per second than one patch per forward pass, and exactly the same model.
TILE = 65
TILE_OUTPUTS = (TILE - PATCH) // STRIDE + 1
SAMPLING_WINDOW = 93  # a 65x65 tile still fits after any rotation
PAD = SAMPLING_WINDOW // 2
GRADIENT_CLIP = 2.0  # largest gradient norm of one step


@dataclass
class TrainingOptions:
    """Hyper-parameters; the defaults train a small CPU-friendly model."""

    modalities: tuple[str, ...] = ("flair", "t1ce")
    fc_width: int = 512
    epochs: int = 6
    patches_per_epoch: int = 259200  # 100 steps of 32 tiles x 81 patches
    batch_size: int = 32  # tiles; each holds 81 patches
    learning_rate: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    tumour_fraction: float = 0.4
    validation_cases: int = 2
    randomise: bool = True
    tumour_appearance: float = 0.5  # share of tiles whose tumour classes get a real-world mean (augment)
    seed: int = 0
    device: str = "auto"
    max_minutes: float | None = None  # end after the epoch that passes this wall time


@dataclass
class TrainingCase:
    """A training case in memory: padded channels, tissue classes for randomisation, sample sites."""

    case_id: str
    padded: np.ndarray          # (C, z, y + 2 PAD, x + 2 PAD) float32
    tissue: np.ndarray          # (z, y + 2 PAD, x + 2 PAD) uint8, see augment.TISSUE_CLASSES
    brain_sites: np.ndarray     # (n, 3) z, y, x of brain voxels
    tumour_sites: list[np.ndarray]  # per tumour class 1..3: (n, 3), possibly empty
    classes: np.ndarray         # (z, y, x) target classes 0..3


@dataclass
class TrainingState:
    """What a checkpoint holds besides the weights."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_score: float = float("-inf")


def prepare_case(case_id: str, data: NetworkInput) -> TrainingCase:
    """Padded channels and tissue map (``data.tissue_map``) with the sites tiles are sampled around."""
    classes = data.classes
    sites = [np.argwhere(classes == c) for c in (1, 2, 3)]
    return TrainingCase(case_id, pad_for_patches(data.channels, PAD),
                        np.pad(tissue_map(data), ((0, 0), (PAD, PAD), (PAD, PAD))), np.argwhere(data.brain), sites,
                        classes)


def sample_tiles(cases: list[TrainingCase], rng: np.random.Generator, size: int,
                 tumour_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Windows (n, C, 93, 93) and their tissue maps (n, 93, 93) around sampled centres.

    ``tumour_fraction`` of the windows are centred on tumour, the tumour class drawn uniformly
    among those the case has (so small enhancing rims are seen as often as oedema); the rest on
    any brain voxel.
    """
    windows, tissues = [], []
    for case_index in rng.integers(len(cases), size=size):
        case = cases[case_index]
        present = [s for s in case.tumour_sites if len(s)]
        sites = present[rng.integers(len(present))] if present and rng.random() < tumour_fraction else case.brain_sites
        z, y, x = sites[rng.integers(len(sites))]
        windows.append(extract_patches(case.padded, np.array([[z, y, x]]), SAMPLING_WINDOW, PAD)[0])
        tissues.append(case.tissue[z, y:y + SAMPLING_WINDOW, x:x + SAMPLING_WINDOW])
    return np.stack(windows), np.stack(tissues)


def tile_targets(tissue: torch.Tensor) -> torch.Tensor:
    """Classes (n, 9, 9) at the centres of the 9x9 patches a 65x65 tile holds (tissue 1-3 = tumour)."""
    centres = tissue[:, PATCH // 2::STRIDE, PATCH // 2::STRIDE][:, :TILE_OUTPUTS, :TILE_OUTPUTS]
    return torch.where(centres <= 3, centres, torch.zeros_like(centres))


def balanced_weights(targets: torch.Tensor, tumour_fraction: float) -> torch.Tensor:
    """Per-class loss weights that give tumour ``tumour_fraction`` of the loss, shared equally by
    the tumour classes present, as the paper's sampling of ~40 % tumour patches does."""
    counts = torch.bincount(targets.flatten(), minlength=4).float()
    present = counts[1:] > 0
    share = torch.zeros(4)
    share[0] = 1.0 - tumour_fraction if present.any() else 1.0
    share[1:][present] = tumour_fraction / present.sum().clamp_min(1)
    return torch.where(counts > 0, share / counts.clamp_min(1), torch.zeros(4))


def _centre_crop(tiles: torch.Tensor, size: int) -> torch.Tensor:
    start = (tiles.shape[-1] - size) // 2
    return tiles[..., start:start + size, start:start + size]


def validation_dice(network: torch.nn.Module, inputs: list[NetworkInput]) -> dict[str, float]:
    """Mean Dice per region of the full pipeline (inference by either network + post-processing)."""
    scores: dict[str, list[float]] = {}
    for data in inputs:
        labels = _box_labels(network, data, postprocessing=True, progress=None)
        reference = np.asarray(CLASS_TO_LABEL, np.uint8)[data.classes]
        for region, values in region_metrics(labels, reference).items():
            scores.setdefault(region, []).append(values["dice"])
    return {region: float(np.mean(v)) for region, v in scores.items()}


def train(cohort_dir: str | Path, out_bundle: str | Path, options: TrainingOptions,
          checkpoint: str | Path | None = None, resume: bool = False, stop_after: int | None = None,
          progress: Callable[[str], None] | None = None) -> dict:
    """Train on the labelled case folders of ``cohort_dir`` (no clinical.csv needed, so BraTS
    training data works as is) and write the best-validation model as a bundle; return its record.

    The last ``validation_cases`` cases (in a seeded order) are held out for validation Dice.
    A checkpoint after every epoch allows ``resume``; every epoch's sampling is seeded by
    (seed, epoch), so a resumed run continues exactly as an uninterrupted one would.
    ``stop_after`` ends this run after that many epochs (the bundle then holds the best so far),
    for training in time-boxed sessions.
    """
    if options.epochs < 1 or (stop_after is not None and stop_after < 1):
        raise ValueError("epochs and stop_after must be at least 1")
    torch.manual_seed(options.seed)
    device = choose_device(options.device)
    folders = case_folders(cohort_dir)
    order = np.random.default_rng([options.seed, 0x5917]).permutation(len(folders))  # own stream, not epoch 0's
    if len(folders) <= options.validation_cases:
        raise InputError(cohort_dir, f"has {len(folders)} cases, too few to hold out {options.validation_cases}",
                         "Generate a larger training cohort (idh-predictor phantom --cases 20)")
    held_out = {folders[i] for i in order[len(folders) - options.validation_cases:]}
    train_cases, validation_inputs, validation_ids, train_quantiles = [], [], [], []
    for folder in folders:
        case = read_case(folder, modalities=options.modalities, dsc=False)
        data = network_input(case, options.modalities)
        if data.classes is None:
            raise InputError(folder, "has no label map (_seg)", "Training needs reference labels for every case")
        if folder in held_out:
            validation_inputs.append(data)
            validation_ids.append(case.case_id)
        else:
            train_cases.append(prepare_case(case.case_id, data))
            train_quantiles.append(intensity_quantiles(data))

    network = SegmentationCNN(Architecture(len(options.modalities), options.fc_width)).to(device)
    optimiser = torch.optim.SGD(network.parameters(), lr=options.learning_rate, momentum=options.momentum,
                                weight_decay=options.weight_decay, nesterov=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=options.epochs)
    state, best_weights = TrainingState(), None
    checkpoint = Path(checkpoint) if checkpoint else Path(str(out_bundle).rstrip("/") + ".checkpoint.pt")
    if resume and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
        network.load_state_dict(saved["network"])
        optimiser.load_state_dict(saved["optimiser"])
        scheduler.load_state_dict(saved["scheduler"])
        best_weights = saved["best_weights"]
        state = TrainingState(int(saved["epoch"]), list(saved["history"]), float(saved["best_score"]))
    appearance = appearance_setting(options.modalities, options.tumour_appearance)
    started = time.perf_counter()
    last_epoch = options.epochs if stop_after is None else min(options.epochs, state.epoch + stop_after)
    for epoch in range(state.epoch, last_epoch):
        network.train()
        rng = np.random.default_rng([options.seed, epoch])
        generator = torch.Generator().manual_seed(options.seed * 1000 + epoch)
        torch.manual_seed(options.seed * 1000 + epoch)  # dropout masks: resumed runs match uninterrupted ones
        losses = []
        steps = max(1, options.patches_per_epoch // (options.batch_size * TILE_OUTPUTS ** 2))
        for step in range(steps):
            windows, tissue = (torch.from_numpy(a) for a in
                               sample_tiles(train_cases, rng, options.batch_size, options.tumour_fraction))
            if options.randomise:
                inputs, tissue = randomise(windows, tissue, generator, TILE, appearance)
            else:
                inputs, tissue = _centre_crop(windows, TILE), _centre_crop(tissue, TILE).long()
            scores = network(inputs.to(device))  # (n, 4, 9, 9)
            targets = tile_targets(tissue)
            loss = F.cross_entropy(scores, targets.to(device),
                                   weight=balanced_weights(targets, options.tumour_fraction).to(device))
            if not torch.isfinite(loss):
                raise RuntimeError(f"training diverged (loss {loss.item()}) at epoch {epoch + 1} step {step + 1}; "
                                   f"the checkpoint {checkpoint} keeps the last finished epoch")
            optimiser.zero_grad()
            loss.backward()
            # the per-class weights make a batch with a few pixels of a tumour class weigh a lot: clip
            # rare huge steps (seen diverging with tumour-appearance randomisation) instead of the rate
            torch.nn.utils.clip_grad_norm_(network.parameters(), GRADIENT_CLIP)
            optimiser.step()
            losses.append(loss.item())
            if progress is not None and (step + 1) % 8 == 0:
                progress(f"epoch {epoch + 1}/{options.epochs} step {step + 1}/{steps} loss {np.mean(losses[-8:]):.3f}")
        scheduler.step()
        dice = validation_dice(network, validation_inputs) if validation_inputs else {}
        score = float(np.mean(list(dice.values()))) if dice else -float(np.mean(losses))
        state.history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "validation_dice": dice,
                              "seconds": round(time.perf_counter() - started, 1)})
        if score > state.best_score:
            state.best_score = score
            best_weights = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        state.epoch = epoch + 1
        with atomic_path(checkpoint) as tmp:  # a run killed while saving keeps the previous checkpoint
            torch.save({"network": network.state_dict(), "optimiser": optimiser.state_dict(),
                        "scheduler": scheduler.state_dict(), "best_weights": best_weights, "epoch": state.epoch,
                        "history": state.history, "best_score": state.best_score}, tmp)
        if progress is not None:
            progress(f"epoch {epoch + 1}/{options.epochs} loss {np.mean(losses):.3f} validation Dice "
                     + ", ".join(f"{k} {v:.3f}" for k, v in dice.items()))
        if options.max_minutes is not None and time.perf_counter() - started > 60 * options.max_minutes:
            break
    network.load_state_dict(best_weights)
    best = max(state.history, key=lambda h: np.mean(list(h["validation_dice"].values())) if h["validation_dice"] else 0)
    metadata = {
        "description": "Tumour segmentation CNN of Li et al. 2017 (after Pereira et al. 2016), 2-D axial 33x33 patches",
        "trained_on": "SIMULATED patients (IDHPredictor digital phantom), not real MRI",
        "normalisation": "per case and channel: z-score inside the brain (non-zero voxels), 0 outside",
        "training": {"cohort": cohort_record(cohort_dir), "cases": [c.case_id for c in train_cases],
                     "validation_cases": sorted(validation_ids), "options": {**asdict(options), "modalities": list(options.modalities)},
                     "device": str(device), "history": state.history,
                     "date": dt.date.today().isoformat()},
        "input_statistics": input_statistics(train_quantiles, options.modalities, f"training cases of {cohort_dir}"),
        "metrics": {"validation_simulated": {"dice": best["validation_dice"], "cases": len(validation_ids),
                                            "note": "held out from training but used to pick the best epoch"}},
    }
    save_model(out_bundle, network.cpu(), options.modalities, metadata)
    return metadata
