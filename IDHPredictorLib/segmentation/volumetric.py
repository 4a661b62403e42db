"""A 3-D segmentation network (MONAI's SegResNet, Myronenko 2018) trained on the same simulated
cases as the paper's 2-D patch CNN, measured beside it on the real cases (issue 15).

It predicts the three nested BraTS regions (whole tumour, tumour core, enhancing) with one
sigmoid each, as in the BraTS-winning region-based training, from random 3-D crops with the
2-D trainer's domain randomisation carried to 3-D (per-tissue intensity shifts, contrast,
gamma, bias field, thick-slice resolution loss, noise, left-right flip, rotation about the
axial axis). Built from MONAI's network, loss and sliding-window inference rather than by hand:
they are maintained and tested there. MONAI (a dependency) is imported only here, when a 3-D
network is built, so that the 2-D paths start without it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.case import read_case
from ..io.cohort import case_folders, cohort_record
from .augment import (
    CORE_NOT_BRIGHTER_THAN_OEDEMA,
    TISSUE_CLASSES,
    AppearanceSetting,
    appearance_setting,
    bright_normal_structures,
    bright_structure_setting,
    non_enhancing_beyond_rim,
    thin_enhancing_rims,
    tumour_appearance,
)
from .checks import input_statistics, intensity_quantiles
from .data import NetworkInput, network_input, tissue_map
from .inference import choose_device, mixed_precision, native_bfloat16
from .network import CLASS_TO_LABEL

REGIONS = ("whole tumour", "tumour core", "enhancing")
DIVISOR = 16  # SegResNet halves the grid three times; crops and inputs are padded to a multiple of this


@dataclass(frozen=True)
class VolumetricArchitecture:
    """What a bundle records to rebuild the network."""

    in_channels: int
    init_filters: int = 16
    crop: int = 128  # the cube it was trained on, and the sliding window it is run with
    type: str = "segresnet"
    spacing_mm: float = 1.0  # the training cases' voxel size: inputs on another grid are resampled to it
    window: int | None = None  # the sliding window at inference (None: the crop); see sliding_window.choose_window

    @property
    def inference_window(self) -> int:
        return self.window or self.crop

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class VolumetricOptions:
    """Training hyper-parameters (defaults sized for one GPU and a few minutes)."""

    modalities: tuple[str, ...] = ("flair", "t1ce")
    init_filters: int = 16
    crop: int = 128
    batch_size: int = 2
    steps: int = 3000
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    tumour_fraction: float = 0.7
    tumour_appearance: float = 0.5  # share of crops whose tumour classes get a real-world mean (augment)
    bright_structures: float = 0.5  # share of crops given contrast-enhancing vessels, plexus, dura (augment)
    thin_rims: float = 0.0  # share of crops whose enhancing rim is thinned to a real one's 1-3 voxels (augment)
    non_enhancing_band: float = 0.0  # share of crops given non-enhancing tumour beyond the rim (augment)
    validation_cases: int = 2
    max_minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # "auto": bfloat16 autocast where the device computes it natively, else "float32"
    initial_bundle: str | None = None  # fine-tune: start from this 3-D bundle's weights (its width is kept)


PRECISIONS = ("auto", "float32", "bfloat16")
# A step whose loss or gradient is not finite is skipped, as PyTorch's GradScaler does in float16
# (oneDNN's bfloat16 convolution backward gave occasional NaN weight gradients on 2-voxel feature
# maps, with 16-voxel crops); this many in a row means the run has diverged and it stops.
MAX_SKIPPED_IN_A_ROW = 10


def _finite_gradients(loss: torch.Tensor, network: torch.nn.Module) -> bool:
    """Whether ``loss`` and every parameter gradient after its backward pass are finite."""
    peaks = [parameter.grad.abs().max() for parameter in network.parameters() if parameter.grad is not None]
    return bool(torch.isfinite(loss)) and bool(torch.isfinite(torch.stack(peaks)).all())


def training_precision(choice: str, device: torch.device) -> str:
    """``choice`` of ``PRECISIONS`` -> "float32" or "bfloat16"; "auto" takes bfloat16 autocast where
    ``device`` computes it natively (``inference.native_bfloat16``)."""
    if choice not in PRECISIONS:
        raise ValueError(f"precision {choice!r}: choose one of {', '.join(PRECISIONS)}")
    if choice == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return choice


def build_network(architecture: VolumetricArchitecture) -> torch.nn.Module:
    """SegResNet with three sigmoid outputs (WT, TC, ET); input (N, C, z, y, x), z/y/x multiples of 16."""
    try:
        from monai.networks.nets import SegResNet
    except ImportError as error:
        raise InputError(None, "the 3-D segmentation network needs MONAI, which is not installed",
                         "Reinstall the package (pip install -e .); in Slicer, the module's first Apply "
                         "installs it, or run slicer.util.pip_install('monai')") from error
    network = SegResNet(spatial_dims=3, in_channels=architecture.in_channels, out_channels=len(REGIONS),
                        init_filters=architecture.init_filters, blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1),
                        dropout_prob=0.2)
    network.architecture = architecture  # as SegmentationCNN carries its own: inference reads the window size
    return network


def region_targets(tissue: torch.Tensor) -> torch.Tensor:
    """(n, 3, z, y, x) float WT/TC/ET from the tissue map (1 core, 2 oedema, 3 enhancing)."""
    whole = (tissue >= 1) & (tissue <= 3)
    core = (tissue == 1) | (tissue == 3)
    return torch.stack([whole, core, tissue == 3], 1).float()


def regions_to_labels(probabilities: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """BraTS labels (z, y, x) from (3, z, y, x) region probabilities, nested ET in TC in WT, brain only."""
    whole = (probabilities[0] > 0.5) & brain
    core = (probabilities[1] > 0.5) & whole
    enhancing = (probabilities[2] > 0.5) & core
    labels = np.zeros(brain.shape, np.uint8)
    labels[whole] = CLASS_TO_LABEL[2]
    labels[core] = CLASS_TO_LABEL[1]
    labels[enhancing] = CLASS_TO_LABEL[3]
    return labels


def _pad_to_divisor(array: np.ndarray, minimum: int = 0) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Zero-pad the last three axes up to multiples of DIVISOR (and at least ``minimum``)."""
    shape = array.shape[-3:]
    target = [max(minimum, -(-n // DIVISOR) * DIVISOR) for n in shape]
    pad = [(0, 0)] * (array.ndim - 3) + [(0, t - n) for n, t in zip(shape, target)]
    return np.pad(array, pad), shape


OVERLAP = 0.25


def window_count(shape: tuple[int, ...], crop: int, overlap: float = OVERLAP) -> int:
    """How many windows MONAI's sliding window visits on a volume of ``shape`` (its scan rule:
    a step of crop x (1 - overlap), the last window flush with the end)."""
    step = max(1, int(crop * (1 - overlap)))
    return int(np.prod([1 if n <= crop else math.ceil((n - crop) / step) + 1 for n in shape]))


@torch.no_grad()
def predict_regions(network: torch.nn.Module, channels: np.ndarray, crop: int = 128,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(3, z, y, x) region probabilities of a (C, z, y, x) z-scored brain box, by MONAI's
    Gaussian-weighted sliding window (crops of the training size, overlapping by a quarter);
    ``progress(windows done, windows)`` after each window."""
    from monai.inferers import sliding_window_inference

    network.eval()
    device = next(network.parameters()).device
    padded, shape = _pad_to_divisor(channels)
    inputs = torch.from_numpy(padded).unsqueeze(0).to(device)
    total, done = window_count(padded.shape[1:], crop), 0

    def predictor(window: torch.Tensor) -> torch.Tensor:
        nonlocal done
        scores = network(window)
        done += len(window)
        if progress is not None:
            progress(min(done, total), total)
        return scores

    with mixed_precision(device):
        logits = sliding_window_inference(inputs, (crop,) * 3, 1, predictor, overlap=OVERLAP, mode="gaussian")
    probabilities = torch.sigmoid(logits.float())[0].cpu().numpy()
    return probabilities[:, :shape[0], :shape[1], :shape[2]]


def predict_volume_labels(network: torch.nn.Module, channels: np.ndarray, brain: np.ndarray,
                          spacing: tuple[float, float, float] | None = None,
                          progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """BraTS label map (z, y, x) of the brain box with ``build_network``'s network, before post-processing.

    A 3-D network knows sizes in voxels: a box whose ``spacing`` (z, y, x mm) differs by more than
    10 % from the training voxel size is resampled to it (trilinear), and the region
    probabilities are brought back to the box's grid before thresholding."""
    architecture = network.architecture
    target = architecture.spacing_mm
    if spacing is None or all(abs(s / target - 1) <= 0.1 for s in spacing):
        return regions_to_labels(predict_regions(network, channels, architecture.inference_window, progress), brain)
    size = [max(1, round(n * s / target)) for n, s in zip(channels.shape[1:], spacing)]
    resampled = F.interpolate(torch.from_numpy(channels)[None], size=size, mode="trilinear", align_corners=False)
    probabilities = predict_regions(network, resampled[0].numpy(), architecture.inference_window, progress)
    back = F.interpolate(torch.from_numpy(probabilities)[None], size=channels.shape[1:], mode="trilinear",
                         align_corners=False)
    return regions_to_labels(back[0].numpy(), brain)


@dataclass
class _GpuCase:
    """A training case resident on the training device, with its crop-centre candidates."""

    channels: torch.Tensor      # (C, z, y, x) float16, padded to at least the crop size
    tissue: torch.Tensor        # (z, y, x) uint8
    brain_sites: np.ndarray     # (n, 3)
    tumour_sites: list[np.ndarray]


def _gpu_case(data: NetworkInput, crop: int, device: torch.device, rng: np.random.Generator) -> _GpuCase:
    tissue = tissue_map(data)
    channels, _ = _pad_to_divisor(data.channels, crop)
    tissue, _ = _pad_to_divisor(tissue, crop)

    def subsample(sites: np.ndarray, n: int = 20000) -> np.ndarray:
        return sites[rng.choice(len(sites), n, replace=False)] if len(sites) > n else sites

    return _GpuCase(torch.from_numpy(channels).to(device, torch.float16), torch.from_numpy(tissue).to(device),
                    subsample(np.argwhere(data.brain)), [subsample(np.argwhere(data.classes == c)) for c in (1, 2, 3)])


def _sample_crops(cases: list[_GpuCase], rng: np.random.Generator, options: VolumetricOptions
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, C, s, s, s) float and (n, s, s, s) tissue crops; ``tumour_fraction`` centred on a
    tumour class drawn uniformly among those the case has, the rest on any brain voxel."""
    size, images, tissues = options.crop, [], []
    for index in rng.integers(len(cases), size=options.batch_size):
        case = cases[index]
        present = [s for s in case.tumour_sites if len(s)]
        sites = present[rng.integers(len(present))] if present and rng.random() < options.tumour_fraction \
            else case.brain_sites
        centre = sites[rng.integers(len(sites))]
        start = [int(np.clip(c - size // 2, 0, n - size)) for c, n in zip(centre, case.tissue.shape)]
        box = tuple(slice(s, s + size) for s in start)
        images.append(case.channels[(slice(None), *box)])
        tissues.append(case.tissue[box])
    return torch.stack(images).float(), torch.stack(tissues)


def randomise_volume(x: torch.Tensor, tissue: torch.Tensor, generator: torch.Generator,
                     appearance: AppearanceSetting | None = None,
                     bright_structures: tuple[torch.Tensor, float] | None = None,
                     thin_rims: float = 0.0,
                     non_enhancing: tuple[torch.Tensor, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """3-D counterpart of ``augment.randomise`` for (n, C, s, s, s) z-scored crops and their
    (n, s, s, s) tissue maps, on the crops' device; ``bright_structures``: see
    ``augment.bright_structure_setting``; ``thin_rims``: share of crops given
    ``augment.thin_enhancing_rims``; ``non_enhancing``: the darker channels and share of
    ``augment.non_enhancing_beyond_rim``."""
    n, channels, size = x.shape[0], x.shape[1], x.shape[-1]
    device = x.device
    inside = (tissue > 0).unsqueeze(1).float()
    if thin_rims > 0:
        x, tissue = thin_enhancing_rims(x, tissue, thin_rims, generator)
    if non_enhancing is not None:
        x, tissue = non_enhancing_beyond_rim(x, tissue, *non_enhancing, generator)
    if appearance is not None:
        x = tumour_appearance(x, tissue, appearance, generator)
    if bright_structures is not None:
        x = bright_normal_structures(x, tissue, *bright_structures, generator)

    def normal(*shape: int, sd: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=device) * sd

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, device=device)

    # per-tissue-class shift, global contrast/offset/gamma: as the 2-D randomisation
    shifts = normal(n, channels, TISSUE_CLASSES, sd=0.3)
    index = tissue.reshape(n, 1, -1).expand(-1, channels, -1).long()
    x = x + torch.gather(shifts, 2, index).reshape_as(x)
    x = x * uniform(0.8, 1.25, n, channels, 1, 1, 1) + normal(n, channels, 1, 1, 1, sd=0.2)
    gamma = torch.exp(normal(n, channels, 1, 1, 1, sd=0.2))
    x = torch.sign(x) * x.abs().clamp_min(1e-6) ** gamma
    # smooth multiplicative bias field from a 4x4x4 lattice
    bias = torch.exp(F.interpolate(normal(n, 1, 4, 4, 4, sd=0.1), size=(size,) * 3, mode="trilinear",
                                   align_corners=True))
    x = (x + 3.0) * bias - 3.0
    # thick slices (clinical 3-6 mm series resampled to 1 mm): average along z, then back
    factor = int(uniform(1.0, 6.0, 1).item())
    if factor > 1:
        thick = F.avg_pool3d(x, (factor, 1, 1), stride=(factor, 1, 1), ceil_mode=True)
        x = F.interpolate(thick, size=(size,) * 3, mode="trilinear", align_corners=False)
    x = (x + normal(n, channels, size, size, size) * uniform(0.0, 0.15, n, 1, 1, 1, 1)) * inside
    # left-right flip and rotation about the axial (z) axis, scale 0.9-1.1, same for image and map
    angle = uniform(-math.pi / 12, math.pi / 12, n)
    scale = uniform(0.9, 1.1, n)
    flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0)
    cos, sin, zero, one = torch.cos(angle) * scale, torch.sin(angle) * scale, torch.zeros(n, device=device), \
        torch.ones(n, device=device)
    # affine_grid's last axis is (x, y, z): rotate x-y, keep z
    theta = torch.stack([torch.stack([cos * flip, -sin, zero, zero], 1),
                         torch.stack([sin * flip, cos, zero, zero], 1),
                         torch.stack([zero, zero, one, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    image = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    labels = F.grid_sample(tissue.unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros",
                           align_corners=False)
    return image, labels[:, 0].round().to(torch.uint8)


def _initial_network(options: VolumetricOptions) -> tuple[VolumetricArchitecture, torch.nn.Module]:
    """A new network, or with ``initial_bundle`` that bundle's network to fine-tune (same modalities;
    its width is kept, the sliding window becomes the training crop until chosen again). The voxel size is set once
    the training cases are read (``_training_spacing``)."""
    if options.initial_bundle is None:
        architecture = VolumetricArchitecture(len(options.modalities), options.init_filters, options.crop)
        return architecture, build_network(architecture)
    from .model_bundle import load_model

    start = load_model(options.initial_bundle)
    if not start.is_volumetric or start.modalities != tuple(options.modalities):
        raise InputError(options.initial_bundle, f"is not a 3-D bundle for {', '.join(options.modalities)} "
                         f"(it has {start.record['architecture'].get('type', 'li2017')} on {', '.join(start.modalities)})",
                         "Fine-tune from a segresnet bundle trained on the same modalities")
    fields = {**start.record["architecture"], "crop": options.crop, "window": None}
    return VolumetricArchitecture(**fields), start.network


def _load_inputs(folders: list[Path], modalities: tuple[str, ...]) -> tuple[list[NetworkInput], float]:
    """Network inputs with labels of the case folders (read in threads: SimpleITK releases the GIL)
    and their common voxel size in mm; anisotropic voxels, or cases on different voxel sizes, are
    refused, since a 3-D network learns sizes in voxels."""
    def load(folder: Path) -> tuple[NetworkInput, tuple[float, ...]]:
        case = read_case(folder, modalities=modalities, dsc=False)
        data = network_input(case, modalities)
        if data.classes is None:
            raise InputError(folder, "has no label map (_seg)", "Training needs reference labels for every case")
        return data, case.reference.GetSpacing()

    with ThreadPoolExecutor(max_workers=8) as pool:
        loaded = list(pool.map(load, folders))
    spacings = np.array([spacing for _, spacing in loaded])
    common = float(np.median(spacings))
    anisotropic = [f.name for f, spacing in zip(folders, spacings) if spacing.max() > 1.1 * spacing.min()]
    if anisotropic:
        raise InputError(folders[0].parent, f"has cases with anisotropic voxels ({', '.join(anisotropic[:5])}); "
                         "the 3-D network is trained and run on cubic voxels",
                         "Resample every training case to one isotropic voxel size (idh-predictor preprocess)")
    odd = [f.name for f, spacing in zip(folders, spacings) if np.any(np.abs(spacing / common - 1) > 0.1)]
    if odd:
        raise InputError(folders[0].parent, f"mixes voxel sizes: {', '.join(odd[:5])} differ from {common:g} mm",
                         "Resample every training case to one isotropic voxel size (idh-predictor preprocess)")
    return [data for data, _ in loaded], common


def train_volumetric(cohort_dir: str | Path, out_bundle: str | Path, options: VolumetricOptions,
                     progress: Callable[[str], None] | None = None) -> dict:
    """Train on the labelled case folders of ``cohort_dir`` and write the final network as a
    bundle; the last ``validation_cases`` (seeded order, as the 2-D trainer) give validation Dice.
    AdamW with a warm-up and cosine decay over ``steps``; bfloat16 autocast where the device computes
    it natively (``precision`` "auto": CUDA, or a CPU with AVX-512 BF16 / AMX). With
    ``max_minutes`` (counted from the start, loading included) the first 100 steps are timed and
    the schedule is shortened to what fits, so that the decay completes; the run still stops at
    that wall time."""
    from .model_bundle import save_volumetric_model
    from .training import validation_dice

    torch.manual_seed(options.seed)
    device = choose_device(options.device)
    bfloat16 = training_precision(options.precision, device) == "bfloat16"  # a bad choice fails before loading
    precision_name = "bfloat16 autocast" if bfloat16 else "float32"
    architecture, network = _initial_network(options)  # before loading: a missing MONAI is reported at once
    network.to(device)
    from monai.losses import DiceLoss

    folders = case_folders(cohort_dir)
    if len(folders) <= options.validation_cases:
        raise InputError(cohort_dir, f"has {len(folders)} cases, too few to hold out {options.validation_cases}",
                         "Generate a larger training cohort (idh-predictor phantom --cases 20)")
    order = np.random.default_rng([options.seed, 0x5917]).permutation(len(folders))
    held_out = {folders[i] for i in order[len(folders) - options.validation_cases:]}
    train_folders = [f for f in folders if f not in held_out]
    started = time.perf_counter()
    train_inputs, spacing = _load_inputs(train_folders + sorted(held_out), options.modalities)
    validation_inputs = train_inputs[len(train_folders):]
    train_inputs = train_inputs[:len(train_folders)]
    architecture = replace(architecture, spacing_mm=spacing)
    network.architecture = architecture
    rng = np.random.default_rng([options.seed, 1])
    cases = [_gpu_case(data, options.crop, device, rng) for data in train_inputs]
    quantiles = [intensity_quantiles(data) for data in train_inputs]
    del train_inputs
    if progress is not None:
        progress(f"loaded {len(cases)} training cases in {time.perf_counter() - started:.0f} s on {device}")

    optimiser = torch.optim.AdamW(network.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)
    planned = options.steps  # with max_minutes, cut after timing the first steps so that the cosine decay completes
    warmup = max(1, options.steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(1.0, (step + 1) / warmup)
                                                  * 0.5 * (1 + math.cos(math.pi * min(step, planned) / planned)))
    dice_loss = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
    generator = torch.Generator(device=device).manual_seed(options.seed)
    appearance = appearance_setting(options.modalities, options.tumour_appearance)
    bright_structures = bright_structure_setting(options.modalities, options.bright_structures)
    non_enhancing = (torch.tensor([m in CORE_NOT_BRIGHTER_THAN_OEDEMA for m in options.modalities]),
                     options.non_enhancing_band) if options.non_enhancing_band > 0 else None
    history, losses = [], []
    log_every = max(1, min(100, options.steps // 10))
    deadline = None if options.max_minutes is None else started + 60 * options.max_minutes
    if progress is not None:
        progress(f"training in {precision_name} on {device}")
    network.train()
    step = skipped = skipped_in_a_row = 0
    while step < planned:
        images, tissue = _sample_crops(cases, rng, options)
        images, tissue = randomise_volume(images, tissue, generator, appearance, bright_structures,
                                         options.thin_rims, non_enhancing)
        targets = region_targets(tissue)
        with mixed_precision(device, bfloat16):
            logits = network(images)
        logits = logits.float()
        loss = dice_loss(logits, targets) + F.binary_cross_entropy_with_logits(logits, targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if _finite_gradients(loss, network):
            optimiser.step()
            losses.append(loss.item())
            skipped_in_a_row = 0
        else:
            skipped, skipped_in_a_row = skipped + 1, skipped_in_a_row + 1
            if skipped_in_a_row == MAX_SKIPPED_IN_A_ROW:
                raise RuntimeError(f"training diverged: {MAX_SKIPPED_IN_A_ROW} steps in a row up to step {step + 1} "
                                   f"gave a non-finite loss or gradient ({precision_name}); nothing was written. "
                                   "Try --precision float32 or a lower --learning-rate")
        scheduler.step()
        if (step + 1) % log_every == 0:
            mean_loss = float(np.mean(losses[-log_every:])) if losses else None
            history.append({"step": step + 1, "loss": mean_loss,
                            "seconds": round(time.perf_counter() - started, 1), "skipped_steps": skipped})
            if progress is not None:
                progress(f"step {step + 1}/{planned} loss {float('nan') if mean_loss is None else mean_loss:.3f} "
                         f"({history[-1]['seconds']:.0f} s" + (f", {skipped} skipped)" if skipped else ")"))
        step += 1
        if deadline is not None and step == 50:
            timed = time.perf_counter()
        if deadline is not None and step == 100:
            per_step = (time.perf_counter() - timed) / 50
            reserve = 60.0  # validation and saving
            planned = min(planned, step + max(0, int((deadline - reserve - time.perf_counter()) / per_step)))
            if progress is not None:
                progress(f"{per_step * 1000:.0f} ms per step: {planned} steps fit in {options.max_minutes} min")
        if deadline is not None and time.perf_counter() > deadline:
            break
    dice = validation_dice(network, validation_inputs) if validation_inputs else {}
    if progress is not None:
        progress(f"trained {step} steps ({skipped} skipped: non-finite); validation Dice "
                 + ", ".join(f"{k} {v:.3f}" for k, v in dice.items()))
    metadata = {
        "description": "3-D SegResNet (MONAI; Myronenko 2018), region-based (WT, TC, ET sigmoids), sliding window",
        "trained_on": "SIMULATED patients (IDHPredictor digital phantom), not real MRI",
        "normalisation": "per case and channel: z-score inside the brain, 0 outside",
        "inference": {"window": options.crop, "overlap": OVERLAP, "threshold": 0.5},
        "training": {"cohort": cohort_record(cohort_dir), "cases": len(cases),
                     "validation_cases": [str(Path(f).name) for f in sorted(held_out)],
                     "options": {**asdict(options), "modalities": list(options.modalities)},
                     "steps_done": step, "device": str(device),
                     "precision": precision_name, "skipped_steps": skipped,
                     "history": history},
        "input_statistics": input_statistics(quantiles, options.modalities, f"training cases of {cohort_dir}"),
        "metrics": {"validation_simulated": {"dice": dice, "cases": len(validation_inputs),
                                            "note": "held out from training; the final network, no epoch chosen"}},
    }
    save_volumetric_model(out_bundle, network.cpu(), architecture, options.modalities, metadata)
    return metadata
