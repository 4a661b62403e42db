"""Per-patient brain anatomy: the MNI152 tissue maps shipped with nilearn, randomly deformed
onto the BraTS grid.

The nilearn wheel carries the ICBM 2009a symmetric T1 template with its grey- and
white-matter probability maps; we read those files directly with SimpleITK (nothing is
downloaded, and importing nilearn itself is not needed). CSF is what the brain mask holds
beyond grey and white matter (ventricles, sulci).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

TISSUES = ("wm", "gm", "csf")


@dataclass(frozen=True)
class Grid:
    """A 3-D image grid in ITK (LPS) convention; ``size`` and ``spacing`` are x, y, z."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Numpy array shape (z, y, x)."""
        return self.size[::-1]

    def image(self, array: np.ndarray) -> sitk.Image:
        """Wrap a (z, y, x) array as a SimpleITK image on this grid."""
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def physical_points(self, index_xyz: np.ndarray) -> np.ndarray:
        """Physical (LPS mm) points of an (n, 3) array of x, y, z indices, vectorised."""
        direction = np.asarray(self.direction).reshape(3, 3)
        return np.asarray(self.origin) + (np.asarray(index_xyz) * np.asarray(self.spacing)) @ direction.T


# The BraTS grid as found in the real cases: 240 x 240 x 155 at 1 mm, origin (0, -239, 0).
BRATS_GRID = Grid((240, 240, 155), (1.0, 1.0, 1.0), (0.0, -239.0, 0.0))
# Same field of view at 2.5 mm, for fast tests.
SMALL_GRID = Grid((96, 96, 62), (2.5, 2.5, 2.5), (0.75, -238.25, 0.75))
# Brain centre of the real BraTS cases in physical (LPS) mm: where the template brain goes.
BRATS_BRAIN_CENTRE = np.array([118.0, -107.0, 72.0])
# ICBM152 is larger than an average adult brain; this shrinks it to the real cases' size.
TEMPLATE_TO_BRATS_SCALE = 0.88


@dataclass
class Anatomy:
    """Tissue fractions (wm, gm, csf) on the patient grid, each (z, y, x) float32 in [0, 1]."""

    grid: Grid
    fractions: dict[str, np.ndarray]

    @property
    def brain(self) -> np.ndarray:
        """Boolean brain mask (any tissue above 1/3)."""
        return sum(self.fractions.values()) > 0.33


def _template_file(name: str) -> str:
    """A map that nilearn ships, found without importing ``nilearn.datasets`` (seconds of
    imports per phantom worker process, for a file path)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the phantom needs nilearn's MNI152 tissue maps: pip install nilearn")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    return str(folder / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz")


def _unit_range(array: np.ndarray) -> np.ndarray:
    """nilearn stores the maps as 0-255; bring them to 0-1."""
    return array / np.float32(array.max())


@functools.lru_cache(maxsize=1)
def template_tissue_maps() -> tuple[dict[str, np.ndarray], sitk.Image]:
    """MNI152 wm/gm/csf probability maps as (z, y, x) float32 arrays, and their reference image."""
    reference = sitk.ReadImage(_template_file("gm"), sitk.sitkFloat32)
    gm, wm, t1 = (_unit_range(sitk.GetArrayFromImage(sitk.ReadImage(_template_file(n), sitk.sitkFloat32)))
                  for n in ("gm", "wm", "t1"))
    brain = ndimage.binary_fill_holes(ndimage.binary_closing((gm + wm) > 0.3, iterations=2) | ((gm + wm) > 0.1) & (t1 > 0.05))
    csf = np.where(brain, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0).astype(np.float32)
    return {"wm": wm, "gm": gm, "csf": csf}, reference


def _smooth_displacement(rng: np.random.Generator, shape: tuple[int, int, int], amplitude_mm: float) -> np.ndarray:
    """Random smooth displacement field (3, z, y, x) in mm: coarse Gaussian noise, linear upsampling

    (linear rather than cubic: 5x faster, and a 6-point control grid is smooth enough at 1 mm).
    """
    coarse = rng.normal(0.0, amplitude_mm, size=(3, 5, 6, 6))
    zoom = [s / c for s, c in zip(shape, coarse.shape[1:])]
    return np.stack([ndimage.zoom(c, zoom, order=1, mode="nearest") for c in coarse]).astype(np.float32)


def deformed_anatomy(rng: np.random.Generator, grid: Grid = BRATS_GRID) -> Anatomy:
    """Warp the template tissue maps onto ``grid`` with a random affine and a smooth elastic field.

    Per patient: isotropic scale 0.92-1.06 on top of the template-to-BraTS shrink, per-axis
    scale +-4 %, rotations up to 5 degrees, shifts up to 4 mm, and a smooth displacement of
    ~2.5 mm. Only the brain's bounding box is resampled (trilinear) to keep this fast.
    """
    maps, reference = template_tissue_maps()
    angles = np.deg2rad(rng.uniform(-5, 5, size=3))
    scale = TEMPLATE_TO_BRATS_SCALE * rng.uniform(0.92, 1.06) * rng.uniform(0.96, 1.04, size=3)
    rotation = sitk.Euler3DTransform((0, 0, 0), *angles).GetMatrix()
    # matrix maps patient (grid) physical offsets -> template physical offsets
    matrix = np.asarray(rotation).reshape(3, 3) / scale[None, :]
    shift = rng.uniform(-4, 4, size=3)
    template_centre = np.asarray(reference.TransformContinuousIndexToPhysicalPoint(
        [float(c) for c in _template_brain_centre()]))

    # Bounding box of the brain on the patient grid (generous margin), in (z, y, x) voxels.
    half_extent = np.array([90.0, 110.0, 85.0]) * scale.max() / TEMPLATE_TO_BRATS_SCALE
    centre_index = (BRATS_BRAIN_CENTRE + shift - np.asarray(grid.origin)) / np.asarray(grid.spacing)
    lo = np.maximum(np.floor(centre_index - half_extent / np.asarray(grid.spacing)), 0).astype(int)
    hi = np.minimum(np.ceil(centre_index + half_extent / np.asarray(grid.spacing)), np.asarray(grid.size)).astype(int)
    box_shape = tuple(int(h - low) for low, h in zip(lo[::-1], hi[::-1]))

    zz, yy, xx = np.meshgrid(*[np.arange(low, h, dtype=np.float32) for low, h in zip(lo[::-1], hi[::-1])], indexing="ij")
    physical = [np.float32(grid.origin[a]) + np.float32(grid.spacing[a]) * idx for a, idx in enumerate((xx, yy, zz))]
    displacement = _smooth_displacement(rng, box_shape, 2.5)
    offsets = [physical[a] - np.float32(BRATS_BRAIN_CENTRE[a] + shift[a]) + displacement[a] for a in range(3)]
    del physical, xx, yy, zz
    # Template physical point -> template continuous index (direction is diagonal +-1, spacing 1).
    t_dir = np.asarray(reference.GetDirection()).reshape(3, 3)
    t_origin = np.asarray(reference.GetOrigin())
    t_spacing = np.asarray(reference.GetSpacing())
    index_matrix = (np.linalg.inv(t_dir) / t_spacing[:, None]) @ matrix
    index_offset = (np.linalg.inv(t_dir) / t_spacing[:, None]) @ (template_centre - t_origin)
    coords = np.stack([
        sum(np.float32(index_matrix[a, b]) * offsets[b] for b in range(3)) + np.float32(index_offset[a])
        for a in (2, 1, 0)  # numpy order z, y, x of the template array
    ])
    del offsets
    fractions = {}
    for name in TISSUES:
        full = np.zeros(grid.shape, np.float32)
        full[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = ndimage.map_coordinates(maps[name], coords, order=1, cval=0.0)
        fractions[name] = full
    total = sum(fractions.values())
    over = total > 1.0
    for name in TISSUES:
        fractions[name][over] /= total[over]
    return Anatomy(grid, fractions)


@functools.lru_cache(maxsize=1)
def _template_brain_centre() -> tuple[float, float, float]:
    """Continuous (x, y, z) template index placed at the BraTS brain centre.

    x and y: centre of the brain's bounding box; z: 65 mm (patient) below the vertex, so the
    cerebrum lands where it is in the real cases and the lower brainstem leaves the grid.
    """
    maps, _ = template_tissue_maps()
    brain = (maps["wm"] + maps["gm"]) > 0.3
    z_idx, y_idx, x_idx = (np.where(brain.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3))
    return ((x_idx[0] + x_idx[-1]) / 2.0, (y_idx[0] + y_idx[-1]) / 2.0, z_idx[-1] - 65.0 / TEMPLATE_TO_BRATS_SCALE)
