"""Read a 4-D DSC perfusion series with its timing (TR, TE) and check its time axis; a dual-echo
series as its long echo plus the short echo (a second 4-D file, or a DICOM folder with two
EchoTime values)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .images import IMAGE_SUFFIXES, check_image, check_nifti_nans, has_image_suffix

log = logging.getLogger(__name__)
MIN_FRAMES = 20  # fewer frames cannot hold a baseline, a bolus and a recovery
TIMING_TOLERANCE = 0.05  # relative: frame intervals and TR that differ by more are inconsistent
TEMPORAL_POSITION, ACQUISITION_TIME = "0020|0100", "0008|0032"
REPETITION_TIME, ECHO_TIME, IMAGE_POSITION = "0018|0080", "0018|0081", "0020|0032"


@dataclass
class DscSeries:
    """A DSC series: 4-D image (x, y, z, t), TR and TE in seconds (TE may be unknown); for a
    dual-echo series ``image`` is the long (T2*-weighted) echo and ``short_echo`` the other."""

    image: sitk.Image
    repetition_time_s: float
    echo_time_s: float | None
    source: Path
    short_echo: sitk.Image | None = None
    short_echo_time_s: float | None = None

    @property
    def dual_echo(self) -> bool:
        return self.short_echo is not None

    @property
    def short_frames(self) -> np.ndarray:
        """The short echo's signal as a (t, z, y, x) array."""
        return sitk.GetArrayFromImage(self.short_echo)

    @property
    def frames(self) -> np.ndarray:
        """Signal as a (t, z, y, x) array."""
        return sitk.GetArrayFromImage(self.image)

    @property
    def times_s(self) -> np.ndarray:
        """Acquisition time of each frame from the first, in seconds."""
        return np.arange(self.image.GetSize()[3]) * self.repetition_time_s

    def frame_geometry(self) -> sitk.Image:
        """The first frame as a 3-D image: the DSC space that masks are resampled into."""
        size = list(self.image.GetSize())
        return sitk.Extract(self.image, [*size[:3], 0], [0, 0, 0, 0])


def sidecar_path(path: Path) -> Path:
    """``<id>_dsc.nii.gz`` -> ``<id>_dsc.json`` (BIDS-style sidecar)."""
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_name(name + ".json")


def _read_sidecar(path: Path) -> dict:
    sidecar = sidecar_path(path)
    if not sidecar.exists():
        return {}
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(sidecar, f"is not valid JSON ({error})", "Fix or delete the sidecar") from error
    if not isinstance(record, dict):
        raise InputError(sidecar, f"holds a JSON {type(record).__name__}, not an object",
                         'Write {"RepetitionTime": 1.5, "EchoTime": 0.03} (seconds)')
    for key in ("RepetitionTime", "EchoTime"):
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InputError(sidecar, f"{key} is {value!r}, not a number", f'Give {key} as a number of seconds, e.g. "{key}": 1.5')
    return record


def read_dsc_series(path: str | Path, repetition_time_s: float | None = None,
                    echo_time_s: float | None = None, short_echo: str | Path | None = None) -> DscSeries:
    """Read a 4-D NIfTI/NRRD/MHA file (time last, or time as vector components) or a DICOM folder.

    TR and TE come from the arguments, else the sidecar JSON (BIDS keys ``RepetitionTime``,
    ``EchoTime``, in seconds), else the DICOM header (or the sidecar's ``VolumeTiming``), else
    (TR only) the 4th voxel spacing. Frames are put in time order by the DICOM temporal tags or
    the sidecar's ``VolumeTiming`` where present. A dual-echo series is the file ``short_echo``
    (``<id>_dsc-short``, with its own sidecar) beside this one, or a DICOM folder whose slices
    carry two EchoTime values.
    """
    if short_echo is not None:
        return with_short_echo(_read_series(Path(path), repetition_time_s, echo_time_s),
                               _read_series(Path(short_echo), repetition_time_s, None, short_echo=True))
    return _read_series(Path(path), repetition_time_s, echo_time_s)


def _read_series(path: Path, repetition_time_s: float | None, echo_time_s: float | None,
                 short_echo: bool = False) -> DscSeries:
    """``read_dsc_series`` of one file or DICOM folder (``short_echo``: a dual-echo series' short echo)."""
    if not path.exists():
        raise InputError(path, "DSC series not found", "Check the path; the DSC file is named <id>_dsc")
    header_tr = header_te = None
    if path.is_dir():
        echoes, header_tr = _read_dicom_4d(path)
        if len(echoes) == 2:
            (short_te, short_image), (header_te, image) = sorted(echoes.items())
            long = read_dicom_echo(path, image, header_tr, repetition_time_s, echo_time_s or header_te)
            return with_short_echo(long, read_dicom_echo(path, short_image, header_tr, repetition_time_s, short_te))
        ((header_te, image),) = echoes.items()
    elif has_image_suffix(path):
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            raise InputError(path, "cannot be read as an image", "Use 4-D NIfTI, NRRD or MHA, or a DICOM folder") from error
        if image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() > 1:
            image = _components_to_time(image)  # e.g. Slicer's multivolume NRRD: one component per frame
    else:
        raise InputError(path, "unknown DSC file type", "Use one of .nii.gz, .nrrd, .mha or a DICOM folder")
    check_image(image, path, 4)
    check_nifti_nans(image, path)
    sidecar = {} if path.is_dir() else _read_sidecar(path)
    timing = _volume_timing(sidecar_path(path), sidecar.get("VolumeTiming"), image.GetSize()[3])
    if timing is not None:
        image, header_tr = _in_time_order(image, timing, path), float(np.median(np.diff(np.sort(timing))))
    tr = repetition_time_s or sidecar.get("RepetitionTime") or header_tr
    if tr is None:
        tr = image.GetSpacing()[3]
        if tr in (0.0, 1.0):  # what readers report when the file stores no time step
            raise InputError(path, "TR unknown: no sidecar JSON and the file stores no time step",
                             f"Add {sidecar_path(path).name} with RepetitionTime and EchoTime (seconds) beside it "
                             "(in Slicer: the TR field of the Perfusion panel)")
        log.warning("%s: no TR given and no sidecar JSON; using the 4th voxel spacing, %.3f s", path, tr)
    te = echo_time_s or sidecar.get("EchoTime") or header_te
    check_timing(path, float(tr), None if te is None else float(te), image.GetSize()[3], dual_echo=short_echo)
    if timing is not None and abs(header_tr - float(tr)) > TIMING_TOLERANCE * float(tr):
        raise InputError(sidecar_path(path), f"VolumeTiming steps {header_tr:.3f} s apart but the TR is {float(tr):.3f} s",
                         "Give the TR that the frames were acquired with, or correct VolumeTiming")
    return DscSeries(image, float(tr), None if te is None else float(te), path)


def read_dicom_echo(path: Path, image: sitk.Image, header_tr: float | None, repetition_time_s: float | None,
                    echo_time_s: float | None) -> DscSeries:
    """One echo of a multi-echo DICOM DSC folder, checked like a single series."""
    check_image(image, path, 4)
    tr = repetition_time_s or header_tr
    if tr is None:
        raise InputError(path, "TR unknown: the DICOM slices carry no RepetitionTime", "Give the TR in seconds")
    check_timing(path, float(tr), echo_time_s, image.GetSize()[3], dual_echo=True)
    return DscSeries(image, float(tr), echo_time_s, path)


def with_short_echo(long: DscSeries, short: DscSeries) -> DscSeries:
    """A dual-echo series from its two echoes, refused unless they match: same grid and frame
    count, same TR, both TEs known and the short one shorter."""
    if long.image.GetSize() != short.image.GetSize() or not np.allclose(long.image.GetOrigin(), short.image.GetOrigin(), atol=1e-3):
        raise InputError(short.source, f"the short echo's grid/frames {short.image.GetSize()} differ from the long echo's "
                         f"{long.image.GetSize()} ({long.source.name})", "Both echoes must come from one dual-echo acquisition")
    if abs(long.repetition_time_s - short.repetition_time_s) > TIMING_TOLERANCE * long.repetition_time_s:
        raise InputError(short.source, f"TR {short.repetition_time_s} s differs from the long echo's {long.repetition_time_s} s",
                         "Both echoes must come from one dual-echo acquisition")
    if long.echo_time_s is None or short.echo_time_s is None or not short.echo_time_s < long.echo_time_s:
        raise InputError(short.source, f"echo times {short.echo_time_s} and {long.echo_time_s} s: a dual-echo analysis needs "
                         "both, the short echo's the shorter", "Give each echo's EchoTime (seconds) in its sidecar JSON")
    return DscSeries(long.image, long.repetition_time_s, long.echo_time_s, long.source, short.image, short.echo_time_s)


def _volume_timing(sidecar: Path, timing: object, frames: int) -> np.ndarray | None:
    """The BIDS ``VolumeTiming`` list (onset of each frame, seconds) checked: one number per frame,
    no two equal, evenly spaced once sorted (the analysis assumes a constant frame interval)."""
    if timing is None:
        return None
    if not isinstance(timing, list) or not all(isinstance(t, int | float) and not isinstance(t, bool) for t in timing):
        raise InputError(sidecar, "VolumeTiming is not a list of numbers", "Give one onset per frame in seconds, "
                         "e.g. [0, 1.5, 3.0, ...], or delete the key")
    if len(timing) != frames:
        raise InputError(sidecar, f"VolumeTiming lists {len(timing)} onsets for {frames} frames",
                         "Give one onset per frame, or delete the key")
    steps = np.diff(np.sort(np.asarray(timing, float)))
    if steps.min() <= 0:
        raise InputError(sidecar, "VolumeTiming gives two frames the same onset", "Correct VolumeTiming: each frame "
                         "has its own acquisition time")
    if np.abs(steps - np.median(steps)).max() > TIMING_TOLERANCE * np.median(steps):
        raise InputError(sidecar, f"frames are unevenly spaced in time (steps {steps.min():.2f}-{steps.max():.2f} s)",
                         "The analysis needs a constant frame interval: resample the series in time, or export "
                         "the complete dynamic acquisition")
    return np.asarray(timing, float)


def _in_time_order(image: sitk.Image, timing: np.ndarray, path: Path) -> sitk.Image:
    """Frames sorted by their onsets: a series stored out of order is reordered, with a warning."""
    order = np.argsort(timing, kind="stable")
    if np.array_equal(order, np.arange(len(order))):
        return image
    log.warning("%s: frames are stored out of time order; reordered by the sidecar's VolumeTiming", path)
    frames = sitk.GetArrayFromImage(image)[order]
    reordered = sitk.GetImageFromArray(np.ascontiguousarray(frames), isVector=False)
    reordered.CopyInformation(image)
    return reordered


def check_timing(path: Path, tr: float, te: float | None, frames: int, dual_echo: bool = False) -> None:
    """Refuse too few frames and implausible TR/TE (seconds) with the fix named (a dual-echo
    series' short echo may be as short as 1 ms)."""
    if frames < MIN_FRAMES:
        raise InputError(path, f"has only {frames} time frames", f"A DSC series needs at least {MIN_FRAMES}; check that "
                         "the whole dynamic acquisition was exported")
    if not 0.1 <= tr <= 10.0:
        raise InputError(path, f"TR of {tr} s is implausible for DSC", "Give TR in seconds (e.g. 1.5) in the sidecar "
                         "JSON 'RepetitionTime' (in Slicer: the TR field of the Perfusion panel)")
    if te is not None and not (0.001 if dual_echo else 0.005) <= te <= 0.2:
        raise InputError(path, f"TE of {te} s is implausible for DSC", "Give TE in seconds (e.g. 0.03) in the sidecar "
                         "JSON 'EchoTime' (in Slicer: the TE field of the Perfusion panel)")


def _components_to_time(image: sitk.Image) -> sitk.Image:
    frames = [sitk.VectorIndexSelectionCast(image, i) for i in range(image.GetNumberOfComponentsPerPixel())]
    return sitk.JoinSeries(frames)


def _read_dicom_4d(folder: Path) -> tuple[dict[float | None, sitk.Image], float | None]:
    """Group a DICOM folder's slices by echo time and temporal position, sort each group in space,
    stack in time: one 4-D image per echo time (keyed in seconds), and the TR."""
    files = [str(p) for p in sorted(folder.iterdir()) if p.is_file()]
    groups: dict[tuple[float | None, float], list[tuple[float, str]]] = {}
    reader = sitk.ImageFileReader()
    tr = None
    for name in files:
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            continue  # not a DICOM image (e.g. DICOMDIR or a text file)
        keys = set(reader.GetMetaDataKeys())
        if TEMPORAL_POSITION in keys:
            when = float(reader.GetMetaData(TEMPORAL_POSITION))
        elif ACQUISITION_TIME in keys:
            when = float(reader.GetMetaData(ACQUISITION_TIME))
        else:
            raise InputError(name, "DICOM slice has neither TemporalPositionIdentifier nor AcquisitionTime",
                             "Export the DSC series with its temporal tags, or as a 4-D NIfTI")
        if IMAGE_POSITION not in keys:
            raise InputError(name, "DICOM slice has no ImagePositionPatient", "Re-export the DSC series with geometry tags")
        position = [float(v) for v in reader.GetMetaData(IMAGE_POSITION).split("\\")]
        direction = np.asarray(reader.GetDirection()).reshape(3, 3)
        echo = round(float(reader.GetMetaData(ECHO_TIME)) / 1000.0, 6) if ECHO_TIME in keys else None
        groups.setdefault((echo, when), []).append((float(np.dot(direction[:, 2], position)), name))
        if REPETITION_TIME in keys and tr is None:
            tr = float(reader.GetMetaData(REPETITION_TIME)) / 1000.0
    if not groups:
        raise InputError(folder, "holds no DICOM images", "Point to the folder of the DSC series' DICOM files")
    echoes = sorted({echo for echo, _ in groups}, key=lambda e: -1.0 if e is None else e)
    if len(echoes) > 2 or (len(echoes) == 2 and None in echoes):
        raise InputError(folder, f"holds slices of echo times {echoes} (seconds)",
                         "Export one DSC series per folder: one echo, or two with EchoTime on every slice")
    counts = {len(g) for g in groups.values()}
    if len(counts) != 1 or len({len([k for k in groups if k[0] == e]) for e in echoes}) != 1:
        raise InputError(folder, f"time points have different slice counts {sorted(counts)}",
                         "The export is incomplete; re-export the whole DSC series")
    series_reader = sitk.ImageSeriesReader()
    images = {}
    for echo in echoes:
        volumes = []
        for when in sorted(w for e, w in groups if e == echo):
            series_reader.SetFileNames([name for _, name in sorted(groups[(echo, when)])])
            try:
                volumes.append(series_reader.Execute())
            except RuntimeError as error:
                raise InputError(folder, f"time point {when:g} cannot be read ({str(error).strip().splitlines()[-1]})",
                                 "Re-export the DSC series") from error
        images[echo] = sitk.JoinSeries(volumes, 0.0, tr or 1.0)
    return images, tr
