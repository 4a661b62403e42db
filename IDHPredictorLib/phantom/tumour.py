"""A glioma with the BraTS subregions, irregular borders and genotype-driven shape traits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..morphology import FULLY_CONNECTED_3D, largest_component
from .anatomy import Anatomy
from .traits import PatientTraits

# BraTS labels.
NECROTIC_CORE, OEDEMA, ENHANCING = 1, 2, 4
# Hidden tissue classes inside the labels (label 1 holds both necrosis and non-enhancing tumour).
TUMOUR_CLASSES = ("oedema", "nonenhancing", "necrosis", "enhancing")


@dataclass
class Tumour:
    """Label map (z, y, x, uint8 in {0,1,2,4}), hidden class masks and a texture field."""

    labels: np.ndarray
    classes: dict[str, np.ndarray]
    texture: np.ndarray          # zero-mean unit-sd smooth field, used for signal heterogeneity
    centre_index: tuple[int, int, int]  # (z, y, x)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-sd Gaussian random field with correlation length ``sigma_vox`` per axis."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return (field - field.mean()) / (field.std() + 1e-6)


def _choose_centre(rng: np.random.Generator, anatomy: Anatomy, brain: np.ndarray, frontal: bool,
                   radius_vox: np.ndarray) -> np.ndarray:
    """A white-matter voxel (z, y, x) off the midline, in the frontal lobe or behind it.

    Frontal = the anterior 40 % of the brain's extent (low y index: ITK LPS, +y posterior).
    """
    wm = anatomy.fractions["wm"] > 0.6
    ys = np.where(brain.any(axis=(0, 2)))[0]
    xs = np.where(brain.any(axis=(0, 1)))[0]
    zs = np.where(brain.any(axis=(1, 2)))[0]
    y_cut = ys[0] + 0.4 * (ys[-1] - ys[0])
    mid_x = (xs[0] + xs[-1]) / 2.0
    z, y, x = np.nonzero(wm)
    keep = (np.abs(x - mid_x) > 0.3 * radius_vox[2] + 8 / anatomy.grid.spacing[0]) \
        & (z > zs[0] + 0.35 * (zs[-1] - zs[0])) & ((y < y_cut) == frontal)
    candidates = np.stack([z[keep], y[keep], x[keep]], axis=1)
    return candidates[rng.integers(len(candidates))]


def make_tumour(rng: np.random.Generator, anatomy: Anatomy, traits: PatientTraits) -> Tumour:
    """Grow the tumour as noisy level sets of an anisotropic, rotated distance field.

    whole tumour: r + a*n1 - b*wm < 1 (oedema runs along white matter with ``infiltration`` b);
    core: r/core_fraction + (a/2)*n2 < 1; enhancing: the outer ``ring_thickness`` of the core
    (wildtype-like ring) when the patient enhances, necrosis inside the ring, and most enhancing
    tumours carry non-enhancing tumour beyond the rim (``_non_enhancing_beyond_rim``). The whole
    tumour always contains the core dilated by 2 voxels, so oedema surrounds the core.
    """
    grid = anatomy.grid
    spacing_zyx = np.asarray(grid.spacing[::-1])
    radius_vox = traits.whole_radius_mm / spacing_zyx
    brain_full = anatomy.brain  # computed once: it sums three full-size maps
    centre = _choose_centre(rng, anatomy, brain_full, traits.frontal, radius_vox)
    half = np.ceil(radius_vox * 1.9).astype(int)
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, grid.shape)
    box = tuple(slice(low, h) for low, h in zip(lo, hi))
    shape = tuple(hi - lo)

    axes = rng.uniform(0.8, 1.25, size=3)
    rotation = _random_rotation(rng)
    offsets_mm = np.stack(np.meshgrid(*[(np.arange(low, h) - c) * s for low, h, c, s in zip(lo, hi, centre, spacing_zyx)],
                                      indexing="ij"), axis=-1)
    r = np.linalg.norm((offsets_mm @ rotation.T) / axes, axis=-1) / traits.whole_radius_mm
    sigma = 5.0 / spacing_zyx
    n1, n2, n3 = (_smooth_noise(rng, shape, sigma) for _ in range(3))
    texture = _smooth_noise(rng, shape, 2.0 / spacing_zyx)

    brain = brain_full[box] & (anatomy.fractions["csf"][box] < 0.5)
    wm = anatomy.fractions["wm"][box]
    a = traits.margin_irregularity
    core_level = r / traits.core_fraction + 0.5 * a * n2
    core = (core_level < 1.0) & brain
    core = largest_component(core, FULLY_CONNECTED_3D)
    beyond = np.zeros_like(core)
    if traits.enhancing:
        # rng.spawn leaves rng's own stream where it was: every other draw of the patient (and so
        # every other trait, image and model trained on the cohort) stays as it was before.
        beyond = _non_enhancing_beyond_rim(rng.spawn(1)[0], core_level, core, brain, sigma)
    whole = ((r + a * n1 - traits.infiltration * (wm - 0.5) < 1.0) & brain) \
        | ndimage.binary_dilation(core | beyond, iterations=2)
    whole &= brain_full[box]
    whole = largest_component(whole, FULLY_CONNECTED_3D)
    core &= whole
    beyond &= whole

    enhancing = np.zeros_like(core)
    necrosis = np.zeros_like(core)
    if traits.enhancing:
        ring = core & (core_level > 1.0 - traits.ring_thickness + 0.15 * n3)
        inner = core & ~ring
        necrosis = inner & (core_level < traits.necrosis_fraction * (1.0 - traits.ring_thickness))
        enhancing = ring if traits.necrosis_fraction > 0.2 else ring & (n3 > 0.3)
    core |= beyond
    nonenhancing = core & ~enhancing & ~necrosis

    labels = np.zeros(grid.shape, np.uint8)
    sub = np.zeros(shape, np.uint8)
    sub[whole] = OEDEMA
    sub[core] = NECROTIC_CORE
    sub[enhancing] = ENHANCING
    labels[box] = sub
    classes = {name: np.zeros(grid.shape, bool) for name in TUMOUR_CLASSES}
    for name, mask in zip(TUMOUR_CLASSES, (whole & ~core, nonenhancing, necrosis, enhancing)):
        classes[name][box] = mask
    full_texture = np.zeros(grid.shape, np.float32)
    full_texture[box] = texture
    return Tumour(labels, classes, full_texture, tuple(int(c) for c in centre))


# Non-enhancing tumour beyond the enhancing rim. In the real enhancing cases 28-86 % of the core's
# outer surface is non-enhancing (BRATS2013-5 and -6, expert labels; TCGA-FG-6692, fused labels),
# in the ring tumours of the phantom before this, median 7 % (0-33 %; README, "Non-enhancing
# tumour beyond the rim in the phantom").
BEYOND_RIM_SHARE = 0.8               # share of enhancing tumours that have it
BEYOND_RIM_DEPTH = (0.1, 0.5)        # how far it reaches, in units of the core's radius
BEYOND_RIM_COVER_CUT = (-0.3, 0.8)   # noise cut: about 60 % to 20 % of the core's surroundings


def _non_enhancing_beyond_rim(rng: np.random.Generator, core_level: np.ndarray, core: np.ndarray,
                              brain: np.ndarray, sigma_vox: np.ndarray) -> np.ndarray:
    """Voxels just outside the core, over a smooth random part of its surface, that become
    non-enhancing tumour (connected to the core); empty for 1 - ``BEYOND_RIM_SHARE`` of tumours."""
    if rng.random() >= BEYOND_RIM_SHARE:
        return np.zeros_like(core)
    depth = rng.uniform(*BEYOND_RIM_DEPTH)
    cover = _smooth_noise(rng, core.shape, sigma_vox) > rng.uniform(*BEYOND_RIM_COVER_CUT)
    shell = (core_level >= 1.0) & (core_level < 1.0 + depth) & cover & brain
    return largest_component(core | shell, FULLY_CONNECTED_3D) & ~core


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3x3 rotation matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q
