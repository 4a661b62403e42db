"""Write volumes as DICOM series for the I/O round-trip tests (SimpleITK + GDCM)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def write_dicom_series(volume: sitk.Image, folder: Path, temporal_position: int | None = None,
                       series_uid: str = "1.2.826.0.1.3680043.2.1125.1", tags: dict[str, str] | None = None,
                       file_offset: int = 0) -> None:
    """One file per axial slice with geometry tags, so GDCM can rebuild the volume."""
    folder.mkdir(parents=True, exist_ok=True)
    volume = sitk.Cast(volume, sitk.sitkInt16)
    direction = volume.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    common = {
        "0008|0060": "MR", "0020|000e": series_uid, "0020|000d": "1.2.826.0.1.3680043.2.1125.2",
        "0008|0021": time.strftime("%Y%m%d"), "0010|0020": "PHANTOM",
        "0020|0037": "\\".join(f"{d:.6f}" for d in (direction[0], direction[3], direction[6],
                                                     direction[1], direction[4], direction[7])),
        **(tags or {}),
    }
    offset = file_offset + (0 if temporal_position is None else temporal_position * 1000)
    for k in range(volume.GetDepth()):
        slice_image = volume[:, :, k]
        for key, value in common.items():
            slice_image.SetMetaData(key, value)
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        slice_image.SetMetaData("0020|0032", "\\".join(f"{p:.6f}" for p in position))
        slice_image.SetMetaData("0020|0013", str(k + 1))
        slice_image.SetMetaData("0018|0050", f"{volume.GetSpacing()[2]:.6f}")
        slice_image.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.3.{offset + k + 1}")
        if temporal_position is not None:
            slice_image.SetMetaData("0020|0100", str(temporal_position + 1))
        writer.SetFileName(str(folder / f"slice_{offset + k:05d}.dcm"))
        writer.Execute(slice_image)


def write_dicom_4d(series: sitk.Image, folder: Path, tr_ms: float, te_ms: float, echo: int = 0) -> None:
    """A 4-D (x, y, z, t) image as one DICOM series with TemporalPositionIdentifier per frame;
    ``echo`` > 0 adds a further echo of the same series to ``folder``."""
    size = list(series.GetSize())
    for t in range(size[3]):
        frame = sitk.Extract(series, [*size[:3], 0], [0, 0, 0, t])
        write_dicom_series(frame, folder, temporal_position=t, file_offset=echo * 1_000_000,
                           tags={"0018|0080": f"{tr_ms:.1f}", "0018|0081": f"{te_ms:.1f}", "0018|0086": str(echo + 1)})


def arrays_equal(a: sitk.Image, b: sitk.Image) -> bool:
    """Same voxel values (compared as float)."""
    return np.array_equal(sitk.GetArrayFromImage(a).astype(float), sitk.GetArrayFromImage(b).astype(float))
