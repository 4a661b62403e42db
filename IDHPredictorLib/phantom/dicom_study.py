"""A simulated patient written as the DICOM study a scanner would send: one folder tree, one file
per slice (per time point for DSC), the MR headers series recognition reads (sequence, TR, TE,
TI, contrast agent, temporal positions), plus a localiser and a diffusion series that recognition
must reject. Written with pydicom (SimpleITK's series writer leaves out attributes the MR Image
IOD requires, which dciodvfy reports); UIDs derive from the case id and seed, so a study is
reproducible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..io.case import Case

# role -> (description, ScanningSequence, SequenceVariant, TR ms, TE ms, TI ms, echo train, contrast agent)
PROTOCOLS: dict[str, tuple[str, str, str, float, float, float | None, int, str | None]] = {
    "t1": ("AX T1 SE", "SE", "SP", 550.0, 10.0, None, 1, None),
    "t1ce": ("AX T1 SE POST", "SE", "SP", 550.0, 10.0, None, 1, "Gadobutrol"),
    "t2": ("AX T2 TSE", "SE", "SK\\SP", 4500.0, 100.0, None, 16, None),
    "flair": ("AX T2 FLAIR", "SE\\IR", "SK\\SP\\MP", 9000.0, 120.0, 2500.0, 16, None),
    "dwi": ("AX DWI TRACEW b1000", "EP", "SK\\SP", 5200.0, 80.0, None, 1, None),
    "localiser": ("3-plane localizer", "GR", "SP", 8.6, 4.0, None, 1, None),
    "dsc": ("ep2d_perf DSC", "EP\\GR", "SK", 1500.0, 35.0, None, 1, "Gadobutrol"),
}
SERIES_ORDER = ("localiser", "t1", "t2", "flair", "dwi", "dsc", "t1ce")


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _common(case_id: str, seed: int, role: str, number: int, when: dt.datetime) -> object:
    """Patient, study, series, frame of reference and equipment attributes of one series."""
    from pydicom.dataset import Dataset
    from pydicom.uid import MRImageStorage

    description, sequence, variant, tr, te, ti, train, agent = PROTOCOLS[role]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = MRImageStorage
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = f"PHANTOM^{case_id}", case_id, "", "O"
    ds.StudyInstanceUID = _uid("study", case_id, seed)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = when.strftime("%H%M%S")
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.StudyDescription = "MR BRAIN TUMOUR (simulated)"
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "MR", _uid("series", case_id, seed, role), number
    ds.SeriesDescription, ds.PatientPosition, ds.BodyPartExamined = description, "HFS", "BRAIN"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = _uid("frame", case_id, seed), ""
    ds.Manufacturer, ds.ManufacturerModelName = "IDHPredictor digital phantom", "simulated"
    ds.MagneticFieldStrength = 3.0
    ds.ImageType = ["ORIGINAL", "PRIMARY", {"localiser": "LOCALIZER", "dwi": "DIFFUSION"}.get(role, "M")]
    ds.ScanningSequence = sequence.split("\\")
    ds.SequenceVariant = variant.split("\\")
    ds.ScanOptions, ds.MRAcquisitionType = "", "2D"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = tr, te, train
    if ti is not None:
        ds.InversionTime = ti
    ds.SequenceName, ds.ImagedNucleus, ds.ImagingFrequency, ds.NumberOfAverages = role, "1H", 127.74, 1
    ds.FlipAngle, ds.AngioFlag = 90 if "EP" not in sequence else 60, "N"
    if agent:
        ds.ContrastBolusAgent, ds.ContrastBolusRoute, ds.ContrastBolusVolume = agent, "IV", 7.5
    return ds


def _write_slices(image: sitk.Image, folder: Path, header: object, seed: int, time_point: int | None = None) -> None:
    """One file per axial slice of ``image`` (LPS geometry), int16 with a rescale slope."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    slope = max(float(np.abs(array).max()) / 30000.0, 1e-6)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    ds = header  # one dataset per series: its per-slice attributes are rewritten before each file is saved
    for k in range(array.shape[0]):
        instance = k + 1 + (0 if time_point is None else time_point * array.shape[0])
        ds.SOPInstanceUID = _uid("instance", header.SeriesInstanceUID, instance, seed)
        ds.InstanceNumber = instance
        ds.ImagePositionPatient = [round(v, 6) for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [image.GetSpacing()[1], image.GetSpacing()[0]]
        ds.SliceThickness = ds.SpacingBetweenSlices = image.GetSpacing()[2]
        if time_point is not None:
            ds.TemporalPositionIdentifier = time_point + 1
            acquired = dt.datetime(2020, 1, 1, 12) + dt.timedelta(seconds=time_point * float(header.RepetitionTime) / 1000.0)
            ds.AcquisitionTime = acquired.strftime("%H%M%S.%f")
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = array.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:.8g}", 0, "US"
        ds.PixelData = np.round(array[k] / float(f"{slope:.8g}")).astype("<i2").tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / f"IM{instance:05d}.dcm", enforce_file_format=True)


def write_case_as_study(case: Case, out: Path, seed: int) -> Path:
    """Write ``case`` (structural series on their grids, the DSC run) as a study under ``out``."""
    when = dt.datetime(2020, 1, 1, 12, 0, 0)
    for number, role in enumerate(SERIES_ORDER, start=1):
        header = _common(case.case_id, seed, role, number, when)
        folder = out / f"{number:02d}-{PROTOCOLS[role][0].replace(' ', '_')}"
        if role in case.images:
            _write_slices(case.images[role], folder, header, seed)
        elif role == "localiser":  # one slice through the middle of the FLAIR
            flair = case.images["flair"]
            middle = flair.GetDepth() // 2
            _write_slices(flair[:, :, middle:middle + 1], folder, header, seed)
        elif role == "dwi":  # a diffusion-like series at half resolution, for recognition to reject
            _write_slices(sitk.Shrink(case.images["t2"], [2, 2, 1]), folder, header, seed)
        elif role == "dsc" and case.dsc is not None:
            header.NumberOfTemporalPositions = case.dsc.image.GetSize()[3]
            header.RepetitionTime = round(case.dsc.repetition_time_s * 1000.0, 3)
            if case.dsc.echo_time_s:
                header.EchoTime = round(case.dsc.echo_time_s * 1000.0, 3)
            geometry = case.dsc.frame_geometry()
            for t, frame in enumerate(case.dsc.frames):
                image = sitk.GetImageFromArray(frame)
                image.CopyInformation(geometry)
                _write_slices(image, folder, header, seed, time_point=t)
    return out


def write_cohort_as_studies(cohort: Path, out: str | Path, seed: int,
                            progress: Callable[[int, int], None] | None = None) -> Path:
    """Every case of a generated cohort as a study folder ``out/<id>/``, the reference labels in
    ``out/labels/`` and the clinical table beside them (all or nothing)."""
    import shutil

    from ..io.atomic import atomic_directory
    from ..io.case import read_case
    from ..io.cohort import case_folders

    folders = case_folders(cohort)
    with atomic_directory(out) as tmp:
        (tmp / "labels").mkdir()
        for done, folder in enumerate(folders, start=1):
            case = read_case(folder, resample=False)
            write_case_as_study(case, tmp / case.case_id, seed)
            shutil.copyfile(folder / f"{case.case_id}_seg.nii.gz", tmp / "labels" / f"{case.case_id}_seg.nii.gz")
            if progress:
                progress(done, len(folders))
        shutil.copyfile(Path(cohort) / "clinical.csv", tmp / "clinical.csv")
    return Path(out)
