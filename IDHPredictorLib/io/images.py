"""Read medical images in any format the project accepts, and check them.

NIfTI, NRRD and MetaImage files go through SimpleITK; a folder is read as a DICOM series
(GDCM sorts the slices). Reading never returns an image with NaNs or of the wrong
dimension: it raises ``InputError`` naming the file and the fix.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .atomic import atomic_path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
TRUNCATED_FIX = "Copy or export the file again; the one given does not hold the whole image"


def has_image_suffix(path: Path) -> bool:
    """True if ``path`` names a file format we read (DICOM folders are checked separately)."""
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def holds_images(folder: Path) -> bool:
    """True for a folder with at least one image file directly in it (a case folder, not a collection)."""
    return any(has_image_suffix(entry) for entry in folder.iterdir())


def read_image(path: str | Path, dimension: int = 3) -> sitk.Image:
    """Read a file or DICOM series folder and check it has ``dimension`` axes and no NaNs."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file or folder not found", "Check the path and the case folder's naming")
    try:
        image = read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        fix = ("The file is damaged or not what its name says: export or copy it again" if has_image_suffix(path) else
               f"Use NIfTI, NRRD, MHA or a DICOM series folder ({', '.join(IMAGE_SUFFIXES)})")
        raise InputError(path, f"cannot be read as an image ({reason})", fix) from error
    check_image(image, path, dimension)
    check_nifti_nans(image, path)
    return image


def check_nifti_nans(image: sitk.Image, path: Path) -> None:
    """Check a NIfTI file's voxels, which ITK's reader does not do for us: a truncated file (an
    interrupted copy or download) is refused instead of read as part zeros, and NaNs, which ITK
    turns into 0, are reported. The voxels are decoded again (nibabel) only for floating-point
    data, the one case that can hold NaNs; otherwise the file's length is checked against its
    header, which keeps a large DSC series to one extra decompression."""
    if path.is_dir() or not path.name.lower().endswith((".nii", ".nii.gz")):
        return
    import nibabel

    length = check_gzip_integrity(path) if path.name.lower().endswith(".gz") else path.stat().st_size
    try:
        nifti = nibabel.load(str(path))
        expected = int(nifti.dataobj.offset) + nifti.get_data_dtype().itemsize * int(np.prod(nifti.shape))
        voxels = np.asanyarray(nifti.dataobj) if np.issubdtype(nifti.get_data_dtype(), np.floating) else None
    except (EOFError, OSError, ValueError, zlib.error) as error:
        raise InputError(path, f"is truncated or corrupt ({str(error).strip().splitlines()[0][:120]})", TRUNCATED_FIX) from error
    if length < expected:
        raise InputError(path, f"is truncated: it holds {length} bytes, its header needs {expected}", TRUNCATED_FIX)
    if voxels is not None:
        _raise_if_not_finite(voxels, path)


def check_gzip_integrity(path: Path) -> int:
    """Decompress ``path`` to its end, which checks gzip's CRC-32 and length (a flipped byte
    inside the compressed data can decode into wrong voxels without any reader noticing), and
    return the decompressed length."""
    length = 0
    try:
        with gzip.open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 22), b""):
                length += len(block)  # reading to the end is the check: gzip compares CRC and length there
    except gzip.BadGzipFile as error:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
        if not compressed:
            raise InputError(path, "is not gzip-compressed although its name ends in .gz",
                             f"Rename it to {path.name[:-3]} (an uncompressed NIfTI) or compress it with gzip") from error
        raise InputError(path, f"is corrupt: its gzip checksum does not match ({error})",
                         "Copy or export the file again; some bytes were changed on the way") from error
    except (EOFError, OSError, zlib.error) as error:
        raise InputError(path, f"is truncated or corrupt ({str(error).strip().splitlines()[0][:120]})", TRUNCATED_FIX) from error
    return length


def check_image(image: sitk.Image, path: str | Path | None, dimension: int) -> None:
    """Raise ``InputError`` if the image has the wrong dimension, is empty or holds NaNs."""
    if image.GetDimension() != dimension:
        raise InputError(path, f"has {image.GetDimension()} dimensions, expected {dimension}",
                         "Give a 3-D volume for structural images and label maps, a 4-D series (time last) for DSC")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"has {image.GetNumberOfComponentsPerPixel()} components per voxel, expected 1",
                         "Save a scalar (grey-level) image")
    if min(image.GetSize()) < 2 and dimension == 3:
        raise InputError(path, f"has size {image.GetSize()}, too small to be a volume", "Check the export")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        _raise_if_not_finite(array, path)


def _raise_if_not_finite(array: np.ndarray, path: str | Path | None) -> None:
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise InputError(path, f"contains {bad} NaN or infinite voxels",
                         "Re-export the image, or replace non-finite voxels (e.g. with 0) before loading")


def read_dicom_series(folder: Path) -> sitk.Image:
    """Read the one DICOM series in ``folder`` as a 3-D volume."""
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputError(folder, "holds no DICOM series", "Point to a folder of DICOM slices, or to an image file")
    if len(series_ids) > 1:
        raise InputError(folder, f"holds {len(series_ids)} DICOM series", "Put each series in its own folder")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))
    return reader.Execute()


def write_image(image: sitk.Image, path: str | Path, compress: bool = True) -> Path:
    """Write an image all-or-nothing (temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return path


def labels_on_grid(labels: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A label map resampled onto ``reference``'s grid (nearest neighbour, 0 outside)."""
    return sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-3) -> bool:
    """True if two images share size, spacing, origin and direction (within ``tolerance``)."""
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance))
