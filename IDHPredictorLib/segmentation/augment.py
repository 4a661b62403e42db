"""Domain randomisation for training patches, after SynthSeg (Billot et al., Med Image Anal 2023).

The shipped models learn from simulated patients but must work on real MRI, so every training
patch gets a new contrast and a new scanner: a random intensity shift per tissue class, a
random global contrast and gamma, a bias field, blur and resolution loss, noise, and a random
rotation, flip and smooth elastic warp (applied to the tissue map too, so the targets move
with the image). Written as batched torch operations (no per-tile Python work).

Optionally (``appearance``), each tumour class is first moved to a random mean drawn from the
range real tumours show on that sequence (``TUMOUR_APPEARANCE``): the phantom's necrosis is
proteinaceous and its oedema clearly bright, while real cases also have fluid-like necrosis dark
on FLAIR, faint oedema and enhancing rims that are not bright on FLAIR (issue 15).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

TISSUE_CLASSES = 8  # 0 outside brain, 1-3 tumour classes, 4-6 background intensity terciles, 7 spare
BRAIN_MEAN_Z = 3.0  # raw brain mean / sd, to apply multiplicative (bias) effects to z-scores

# Range of the mean z-score (brain units) of tumour classes 1 (necrotic / non-enhancing core),
# 2 (oedema), 3 (enhancing) per sequence. From MR physics (fluid is dark on FLAIR and T1, bright
# on T2; enhancing tissue is bright on T1c) and the four real cases in ../shared/realdata, whose
# reference labels measured: core FLAIR -1.6 (a cystic cavity) to +2.3, T1c -1.6 to +0.3; oedema
# FLAIR +0.8 (missed by the shipped networks) to +2.6; enhancing FLAIR +0.2 to +2.2, T1c +1.1 to
# +1.7. Three CPU pilots chose these bounds on those same cases (README, segmentation section):
# a core down to -2 on FLAIR made the network take sulcal CSF for tumour, and enhancing from
# T1c +0.8 took normal T1c-bright structures; with those structures now in the randomisation
# (``bright_normal_structures``) enhancing starts at +0.8 again. The real cases are therefore no
# independent test.
TUMOUR_APPEARANCE = {
    "flair": ((-0.5, 2.5), (0.6, 2.8), (0.5, 2.5)),
    "t1ce": ((-1.5, 0.5), (-1.0, 0.6), (0.8, 2.5)),
    "t1": ((-2.5, 0.0), (-1.5, 0.2), (-1.5, 0.5)),
    "t2": ((0.3, 3.0), (0.6, 3.0), (0.0, 2.5)),
}


# Sequences on which a moved core is never brighter than its oedema: necrosis and non-enhancing
# tumour have a longer T1 than peritumoral oedema (phantom.tissue.TISSUE_RELAXATION), so they are
# the darker of the two on T1-weighted images, with or without contrast; in the four real cases'
# reference labels the core's median T1c lies 0.1 to 1.7 brain sd below the oedema's. Drawn
# independently, a third of the moved crops showed the reverse. On FLAIR and T2 either order
# occurs (cystic or solid cores).
CORE_NOT_BRIGHTER_THAN_OEDEMA = ("t1ce", "t1")


class AppearanceSetting(NamedTuple):
    """The ``appearance`` argument of the randomisers (``appearance_setting``)."""

    ranges: torch.Tensor              # (channels, 3 tumour classes, 2) low/high mean z-scores
    probability: float                # share of crops moved
    core_not_brighter: torch.Tensor   # (channels,) bool: core drawn no brighter than oedema


def appearance_setting(modalities: tuple[str, ...], probability: float) -> AppearanceSetting | None:
    """The ranges of ``TUMOUR_APPEARANCE`` and the ordering of ``CORE_NOT_BRIGHTER_THAN_OEDEMA``
    for ``modalities``, with the share of crops moved; None when that share is 0."""
    if probability <= 0:
        return None
    return AppearanceSetting(torch.tensor([TUMOUR_APPEARANCE[m] for m in modalities], dtype=torch.float32),
                             probability, torch.tensor([m in CORE_NOT_BRIGHTER_THAN_OEDEMA for m in modalities]))


def _uniform_draws(generator: torch.Generator, device: torch.device, *shape: int) -> torch.Tensor:
    """U(0, 1) draws from ``generator`` (which may live on another device), moved to ``device``."""
    return torch.rand(*shape, generator=generator, device=generator.device).to(device)


def _voxels_within(mask: torch.Tensor, reach: torch.Tensor) -> torch.Tensor:
    """(n, s, s, s) bool: voxels within ``reach[i]`` voxels (chessboard distance) of crop i's ``mask``."""
    grown, within = mask.unsqueeze(1).float(), []
    for _ in range(int(reach.max())):
        grown = F.max_pool3d(grown, 3, stride=1, padding=1)
        within.append(grown[:, 0] > 0)
    return torch.stack(within)[reach - 1, torch.arange(len(mask), device=mask.device)]


def _integer_draws(generator: torch.Generator, device: torch.device, n: int, bounds: tuple[int, int]) -> torch.Tensor:
    """(n,) integers drawn uniformly from ``bounds`` (low, high), both included."""
    low, high = bounds
    return low + (_uniform_draws(generator, device, n) * (high - low + 1)).long().clamp_max(high - low)


def tumour_appearance(x: torch.Tensor, tissue: torch.Tensor, setting: AppearanceSetting,
                      generator: torch.Generator) -> torch.Tensor:
    """Shift each tumour class of a ``setting.probability`` share of the (n, C, ...) crops so that
    its mean lies at a value drawn uniformly from ``setting.ranges``; on the ordered channels the
    lower of the core and oedema draws goes to the core. Texture within a class is kept."""
    n, channels = x.shape[:2]
    device = x.device
    chosen = _uniform_draws(generator, device, n) < setting.probability
    draw = _uniform_draws(generator, device, n, channels, 3)
    ranges = setting.ranges.to(device)
    targets = ranges[..., 0] + draw * (ranges[..., 1] - ranges[..., 0])  # (n, C, 3)
    ordered = setting.core_not_brighter.to(device)[None]  # (1, C)
    core, oedema = targets[..., 0], targets[..., 1]
    targets = torch.stack([torch.where(ordered, torch.minimum(core, oedema), core),
                           torch.where(ordered, torch.maximum(core, oedema), oedema), targets[..., 2]], -1)
    flat_x, flat_tissue = x.reshape(n, channels, -1), tissue.reshape(n, 1, -1)
    shift = torch.zeros_like(flat_x)
    for index, tumour_class in enumerate((1, 2, 3)):
        inside = (flat_tissue == tumour_class).float()  # (n, 1, voxels)
        count = inside.sum(-1)  # (n, 1)
        mean = (flat_x * inside).sum(-1) / count.clamp_min(1)  # (n, C)
        move = torch.where((count > 0) & chosen[:, None], targets[:, :, index] - mean, torch.zeros_like(mean))
        shift = shift + move[..., None] * inside
    return x + shift.reshape_as(x)


# Enhancing rims as thin as real ones. The phantom's ring is the outer third of the core radius, so
# two thirds of its core enhance, rims 3-7 voxels thick; the three real cases with enhancement have
# rims 2.5-4 voxels thick (twice the mean distance to the rim's edge) and 40-73 % of their core
# enhancing (their reference labels). A network taught on thick rims takes a real thin rim for
# necrosis and misses the large non-enhancing core around it (README, segmentation section).
RIM_KEPT_VOXELS = (1, 3)  # thinned rims keep 1 to 3 voxels (drawn per crop) next to the non-core tissue


def thin_enhancing_rims(x: torch.Tensor, tissue: torch.Tensor, probability: float,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """In a ``probability`` share of (n, C, s, s, s) crops that hold both core (tissue 1) and
    enhancing tumour (3), turn the enhancing voxels farther than 1-3 voxels (drawn per crop) from
    non-core tissue into core: label 1, intensity moved by the crop's core-minus-enhancing mean
    per channel (texture kept). Returns the new crops and (n, s, s, s) tissue maps."""
    n, device = x.shape[0], x.device
    core, enhancing = tissue == 1, tissue == 3
    has_both = core.flatten(1).any(1) & enhancing.flatten(1).any(1)
    chosen = (_uniform_draws(generator, device, n) < probability) & has_both
    kept = _integer_draws(generator, device, n, RIM_KEPT_VOXELS)
    inner = enhancing & ~_voxels_within(~(core | enhancing), kept) & chosen.view(n, 1, 1, 1)

    def class_mean(mask: torch.Tensor) -> torch.Tensor:
        weights = mask.flatten(1).unsqueeze(1).float()  # (n, 1, voxels)
        return (x.flatten(2) * weights).sum(-1) / weights.sum(-1).clamp_min(1)  # (n, C)

    shift = (class_mean(core) - class_mean(enhancing)).view(*x.shape[:2], 1, 1, 1)
    return x + shift * inner.unsqueeze(1).float(), torch.where(inner, torch.ones_like(tissue), tissue)


# Non-enhancing tumour beyond the enhancing rim. In the phantom it lies beyond the rim of most
# enhancing tumours (phantom/tumour.py); this adds more of it, with other shapes and contrasts,
# so that a network does not learn that core stops where enhancement stops. In real glioblastoma
# non-enhancing tumour also lies beside and around the enhancing part, and looks like oedema but
# darker on T1-weighted images: in the real cases' reference labels the necrotic/non-enhancing
# class's median lies 0.1-1.7 brain sd below the oedema's on T1c and -2.5 to +0.8 from it on
# FLAIR (BRATS2013-6, expert: 0.5 below on T1c, 0.4 below on FLAIR; most of its missed core).
NON_ENHANCING_REACH_VOXELS = (2, 6)  # how far beyond the rim the band may reach, drawn per crop
NON_ENHANCING_T1_DARKER = (0.1, 1.0)  # brain sd below the oedema it replaces, on ``darker`` channels
NON_ENHANCING_OTHER_SHIFT = (-0.8, 0.5)  # brain sd, on the other channels (FLAIR, T2)


def non_enhancing_beyond_rim(x: torch.Tensor, tissue: torch.Tensor, darker: torch.Tensor, probability: float,
                             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """In a ``probability`` share of (n, C, s, s, s) crops holding enhancing tumour (tissue 3) and
    oedema (2), turn patches of the oedema within 2-6 voxels (drawn per crop) of the enhancing
    tumour into core (1): darker by 0.1-1.0 brain sd on the ``darker`` ((C,) bool) channels,
    shifted by -0.8 to +0.5 on the others, texture kept. Returns the new crops and tissue maps."""
    n, size, device = x.shape[0], x.shape[-1], x.device
    enhancing, oedema = tissue == 3, tissue == 2
    chosen = (_uniform_draws(generator, device, n) < probability) & enhancing.flatten(1).any(1) \
        & oedema.flatten(1).any(1)
    near = _voxels_within(enhancing, _integer_draws(generator, device, n, NON_ENHANCING_REACH_VOXELS))
    patches = _smooth_field(n, size, 4, generator, device)[:, 0] > 0  # about half of the surroundings
    band = oedema & near & patches & chosen.view(n, 1, 1, 1)
    dark_low, dark_high = NON_ENHANCING_T1_DARKER
    other_low, other_high = NON_ENHANCING_OTHER_SHIFT
    draw = _uniform_draws(generator, device, n, x.shape[1])
    shift = torch.where(darker.to(device)[None], -(dark_low + draw * (dark_high - dark_low)),
                        other_low + draw * (other_high - other_low))
    return x + shift.view(*x.shape[:2], 1, 1, 1) * band.unsqueeze(1).float(), \
        torch.where(band, torch.ones_like(tissue), tissue)


# Sequences on which normal structures are bright: vessels, choroid plexus and dura have no
# blood-brain barrier and take up gadolinium, so every real T1c shows bright non-tumour voxels,
# which the phantom (tissue, CSF and tumour only) lacks. Without them a network learns "bright on
# T1c is enhancing tumour", and enhancing tumour as faint as the real cases' (+1.1 to +1.7 brain
# sd) could not be taught without it taking those structures for tumour (README, pilots).
CONTRAST_UPTAKE = ("t1ce",)
BRIGHT_STRUCTURE_Z = (1.5, 4.0)  # added brain sd at a structure's centre; real vessels reach +4 and more


def bright_structure_setting(modalities: tuple[str, ...], probability: float) -> tuple[torch.Tensor, float] | None:
    """The ``bright_structures`` argument of ``randomise_volume``: which channels take up contrast
    ((C,) bool) and the share of crops that get structures; None when that share is 0 or no
    channel takes up contrast."""
    uptake = torch.tensor([m in CONTRAST_UPTAKE for m in modalities])
    return (uptake, probability) if probability > 0 and bool(uptake.any()) else None


def _smooth_field(n: int, size: int, lattice: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n, 1, s, s, s) smooth Gaussian field with unit sd per crop, upsampled from a lattice³ grid."""
    coarse = torch.randn(n, 1, lattice, lattice, lattice, generator=generator, device=device)
    field = F.interpolate(coarse, size=(size,) * 3, mode="trilinear", align_corners=True)
    return field / field.flatten(1).std(1).clamp_min(1e-6).view(n, 1, 1, 1, 1)


def bright_normal_structures(x: torch.Tensor, tissue: torch.Tensor, uptake: torch.Tensor, probability: float,
                             generator: torch.Generator) -> torch.Tensor:
    """Add contrast-enhancing normal structures to a ``probability`` share of (n, C, s, s, s)
    crops, on the ``uptake`` channels and non-tumour brain only (their labels stay background):
    vessels as tubes where two smooth random surfaces cross, choroid-plexus-like blobs where a
    smooth field peaks, and patches of the brain's rim (dura, venous sinuses)."""
    n, size, device = x.shape[0], x.shape[-1], x.device
    chosen = (_uniform_draws(generator, device, n) < probability).float()
    first, second = (_smooth_field(n, size, 6, generator, device) for _ in range(2))
    width = 0.04 + 0.06 * _uniform_draws(generator, device, n, 1, 1, 1, 1)
    vessels = torch.exp(-(first ** 2 + second ** 2) / (2 * width ** 2))
    blobs = torch.sigmoid((_smooth_field(n, size, 4, generator, device) - 2.3) / 0.15)
    inside = (tissue > 0).unsqueeze(1).float()
    rim = F.max_pool3d(1.0 - inside, 5, stride=1, padding=2) * inside
    rim = rim * (_smooth_field(n, size, 4, generator, device) > 0.5).float()
    normal_brain = (tissue >= 4).unsqueeze(1).float()
    structures = torch.maximum(torch.maximum(vessels, blobs), rim) * normal_brain
    low, high = BRIGHT_STRUCTURE_Z
    amount = low + (high - low) * _uniform_draws(generator, device, n, 1, 1, 1, 1)
    return x + structures * (amount * chosen.view(n, 1, 1, 1, 1)) * uptake.to(device).view(1, -1, 1, 1, 1).float()


def randomise(patches: torch.Tensor, tissue: torch.Tensor, generator: torch.Generator,
              out_size: int, appearance: AppearanceSetting | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment (n, C, s, s) z-scored tiles with their (n, s, s) tissue-class map; return the
    warped centre ``out_size`` crops of both: (n, C, o, o) float and (n, o, o) long.
    ``appearance``: see ``appearance_setting``."""
    n, channels, size, _ = patches.shape
    inside = (tissue > 0).unsqueeze(1).float()
    if appearance is not None:
        patches = tumour_appearance(patches, tissue, appearance, generator)

    def normal(*shape: int, sd: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * sd

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    # 1. per-tissue-class intensity shift (SynthSeg's random class means, kept near the truth)
    shifts = normal(n, channels, TISSUE_CLASSES, sd=0.3)
    x = patches + torch.gather(shifts, 2, tissue.reshape(n, 1, -1).expand(-1, channels, -1).long()).reshape_as(patches)
    # 2. global contrast, offset and gamma (sign-preserving power on z-scores)
    x = x * uniform(0.8, 1.25, n, channels, 1, 1) + normal(n, channels, 1, 1, sd=0.2)
    gamma = torch.exp(normal(n, channels, 1, 1, sd=0.2))
    x = torch.sign(x) * x.abs().clamp_min(1e-6) ** gamma
    # 3. bias field: smooth multiplicative gradient over the patch
    axis = torch.linspace(-1, 1, size)
    gy, gx = normal(n, 1, 1, 1, sd=0.08), normal(n, 1, 1, 1, sd=0.08)
    bias = torch.exp(gy * axis.view(1, 1, -1, 1) + gx * axis.view(1, 1, 1, -1))
    x = (x + BRAIN_MEAN_Z) * bias - BRAIN_MEAN_Z
    # 4. blur and resolution loss
    x = _random_blur(x, uniform(0.0, 1.2, n), generator)
    low_res = torch.rand(n, generator=generator) < 0.2
    if low_res.any():
        small = F.interpolate(x[low_res], scale_factor=0.5, mode="bilinear", align_corners=False)
        x[low_res] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    # 5. noise, then zero outside the brain again
    x = (x + normal(n, channels, size, size) * uniform(0.0, 0.15, n, 1, 1, 1)) * inside
    # 6. rotation, flips, elastic warp about the centre, the same for image and tissue map
    return _random_warp(x, tissue, generator, out_size)


def _random_blur(x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per patch (sigma < 0.3 leaves the patch unchanged)."""
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernels = torch.exp(-offsets.view(1, -1) ** 2 / (2 * sigmas.clamp_min(0.3).view(-1, 1) ** 2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    kernels[sigmas < 0.3] = 0.0
    kernels[sigmas < 0.3, radius] = 1.0
    n, channels, size, _ = x.shape
    grouped = x.reshape(1, n * channels, size, size)
    k = kernels.repeat_interleave(channels, dim=0)
    grouped = F.conv2d(F.pad(grouped, (radius, radius, 0, 0), mode="replicate"), k.view(-1, 1, 1, 2 * radius + 1),
                       groups=n * channels)
    grouped = F.conv2d(F.pad(grouped, (0, 0, radius, radius), mode="replicate"), k.view(-1, 1, 2 * radius + 1, 1),
                       groups=n * channels)
    return grouped.reshape(n, channels, size, size)


def _random_warp(x: torch.Tensor, tissue: torch.Tensor, generator: torch.Generator,
                 out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, size, _ = x.shape
    angle = torch.rand(n, generator=generator) * 2 * math.pi
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    scale = 1.0 - 0.1 * torch.rand(n, generator=generator)  # <= 1: a rotated tile stays inside the window
    extent = out_size / size  # sample only the central out_size pixels
    cos, sin = torch.cos(angle) * extent * scale, torch.sin(angle) * extent * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, torch.zeros(n)], 1),
                         torch.stack([sin * flip, cos, torch.zeros(n)], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, out_size, out_size), align_corners=False)
    coarse = torch.randn(n, 2, 4, 4, generator=generator) * (1.5 / size)
    elastic = F.interpolate(coarse, size=(out_size, out_size), mode="bicubic", align_corners=True)
    centre = out_size // 2
    elastic = elastic - elastic[:, :, centre:centre + 1, centre:centre + 1]  # centre stays put
    grid = grid + elastic.permute(0, 2, 3, 1)
    image = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    labels = F.grid_sample(tissue.unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return image, labels[:, 0].long()
