"""Conventional DSC analysis of one case: masks in DSC space, bolus arrival, delta-R2*, AIF,
leakage-corrected rCBV normalised to contralateral white matter, peak height and percentage
signal recovery."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io.case import REFERENCE_ORDER, Case, find_case_files, read_case
from ..io.dsc import DscSeries
from ..preprocessing import register_rigid
from ..preprocessing.brain import InputKind, detect_brain
from ..quality import QualityReport
from .aif import ArterialInput, automatic_aif, manual_aif
from .dsc_quality import dsc_curve_quality, leakage_fit_r2
from .kinetics import blood_volume, bolus_arrival, check_bolus_position, delta_r2, dual_echo_delta_r2, leakage_correction
from .regions import DscRegions, contralateral_white_matter, subregion_masks, to_dsc_space

TUMOUR_STATISTICS_REGION = ("nonenhancing", "enhancing")  # solid tumour: the rCBV hot spot lives there


@dataclass
class PerfusionAnalysis:
    """Everything later stages need from one DSC series."""

    signal: np.ndarray          # (t, z, y, x) float32 raw T2*-weighted signal
    times_s: np.ndarray
    arrival: int                # first bolus frame
    regions: DscRegions
    aif: ArterialInput
    rcbv: np.ndarray            # (z, y, x) float32, 0 outside the brain
    leakage_k2: np.ndarray      # (z, y, x) float32, BSW K2 (1/s)
    geometry: sitk.Image        # the DSC frame grid
    statistics: dict[str, float | None]
    quality: QualityReport = field(default_factory=QualityReport)  # verdicts on the series (``dsc_quality``)

    def rcbv_image(self) -> sitk.Image:
        """The rCBV map as an image on the DSC grid."""
        image = sitk.GetImageFromArray(self.rcbv)
        image.CopyInformation(self.geometry)
        return image


def read_perfusion_case(folder: str | Path, labels: bool = True) -> Case:
    """A case with its DSC series, one structural image (for the brain mask) and, unless ``labels``
    is False (the mask comes from elsewhere, e.g. the CNN), its tumour labels."""
    _, files = find_case_files(folder)
    structural = next((m for m in REFERENCE_ORDER if m in files), None)
    if structural is None or "dsc" not in files or (labels and "seg" not in files):
        raise InputError(folder, "needs a DSC series (<id>_dsc), a tumour mask (<id>_seg) and a structural image",
                         "Add them, or leave the case out of the perfusion analysis")
    return read_case(folder, (structural,), labels=labels, dsc=True)


def dsc_to_structural(dsc: DscSeries, structural: sitk.Image) -> sitk.Transform:
    """Rigid transform (DSC points -> structural points) registering the DSC series' early,
    pre-bolus mean (frames 1-3) to a structural image (T2 or T1c), Mattes mutual information.

    A DSC volume is small and coarse (about 30 slices of 5 mm): shrinking it 4-fold leaves too few
    slices to register on, and 5 % sampling too few voxels; two levels and 20 % sampling bring the
    error on the phantom from up to 1.3 mm to under 0.4 mm (6 patients, 12 known shifts).
    """
    baseline = sitk.GetImageFromArray(dsc.frames[1:4].astype(np.float32).mean(axis=0))
    baseline.CopyInformation(dsc.frame_geometry())
    return register_rigid(baseline, structural, sampling=0.2, pyramid=((2, 2.0), (1, 0.0)))


def structural_brain_mask(structural: sitk.Image) -> sitk.Image:
    """The brain of a skull-stripped structural image (zero or constant background, or a mask);
    a raw scan with skull is refused: its "brain" would hold scalp and skull."""
    detection = detect_brain(structural)
    if detection.kind is InputKind.WITH_SKULL:
        raise InputError(None, "the structural image still has skull and scalp, so the DSC brain mask would be wrong",
                         "Run idh-predictor preprocess on the case first and use its output folder")
    mask = sitk.GetImageFromArray(detection.foreground.astype(np.uint8))
    mask.CopyInformation(structural)
    return mask


def analyse_dsc(dsc: DscSeries, labels: sitk.Image, brain: sitk.Image, aif_voxels: np.ndarray | None = None,
                reference_mask: np.ndarray | None = None, register: bool = False) -> PerfusionAnalysis:
    """Analyse ``dsc`` with the structural ``labels`` (BraTS 1/2/4) and ``brain`` (a skull-stripped
    structural image: non-zero is brain).

    ``aif_voxels`` ((z, y, x) DSC indices) and ``reference_mask`` (boolean on the DSC grid)
    override the automatic AIF and white-matter reference; ``register`` corrects motion between
    the DSC and structural scans by a rigid registration (``dsc_to_structural``) before the
    masks are resampled (their geometry alone is used otherwise).
    """
    if dsc.echo_time_s is None:
        raise InputError(dsc.source, "echo time (TE) unknown: delta-R2* needs it",
                         "Add EchoTime (seconds) to the DSC series' JSON sidecar (in Slicer: the TE field of the "
                         "Perfusion panel)")
    geometry = dsc.frame_geometry()
    signal = dsc.frames.astype(np.float32)
    transform = dsc_to_structural(dsc, brain) if register else None
    brain_dsc = to_dsc_space(structural_brain_mask(brain), geometry, transform) & (signal[1:4].mean(axis=0) > 0)
    subregions = subregion_masks(labels, geometry, transform)
    if not subregions["whole"].any():
        raise InputError(dsc.source, "the tumour does not overlap the DSC field of view",
                         "Check that the DSC series and the structural images belong together")
    times = dsc.times_s
    brain_curve = signal[:, brain_dsc].mean(axis=1)
    check_bolus_position(brain_curve, dsc.source)
    arrival = bolus_arrival(brain_curve, dsc.source)
    dr2 = np.zeros(signal.shape, np.float32)
    if dsc.dual_echo:  # T1-free: T1 shortening by leaked tracer scales both echoes alike
        dr2[:, brain_dsc] = dual_echo_delta_r2(dsc.short_frames[:, brain_dsc].T, signal[:, brain_dsc].T,
                                               dsc.short_echo_time_s, dsc.echo_time_s, arrival).T
    else:
        dr2[:, brain_dsc] = delta_r2(signal[:, brain_dsc].T, arrival, dsc.echo_time_s).T
    normal = brain_dsc & ~subregions["whole"]
    dt = float(np.mean(np.diff(times)))
    leakage_reference = dr2[:, normal].mean(axis=1)
    corrected, _, k2 = leakage_correction(dr2[:, brain_dsc].T, leakage_reference, dt, arrival)
    cbv = np.zeros(brain_dsc.shape, np.float32)
    cbv[brain_dsc] = blood_volume(corrected, dt, arrival)
    leakage = np.zeros(brain_dsc.shape, np.float32)
    leakage[brain_dsc] = k2
    baseline = signal[1:arrival].mean(axis=0)
    reference = reference_mask if reference_mask is not None else contralateral_white_matter(
        brain_dsc, subregions["whole"], baseline, geometry)
    reference_cbv = float(np.median(cbv[reference & brain_dsc])) if (reference & brain_dsc).any() else 0.0
    if reference_cbv <= 0:
        raise InputError(dsc.source, "the white-matter reference region has no blood volume",
                         "Choose another reference region (reference_mask)")
    rcbv = np.where(brain_dsc, cbv / reference_cbv, 0.0).astype(np.float32)
    if aif_voxels is None:
        candidates = brain_dsc & ~subregions["whole"]
        aif = automatic_aif(dr2, candidates, times, arrival)
    else:
        aif = manual_aif(dr2, aif_voxels)
    regions = DscRegions(brain_dsc, subregions, reference)
    analysis = PerfusionAnalysis(signal, times, arrival, regions, aif, rcbv, leakage, geometry, {})
    analysis.statistics = tumour_statistics(analysis)
    analysis.quality = series_quality(analysis, dr2, leakage_reference, dsc.dual_echo)
    return analysis


def statistics_region(analysis: PerfusionAnalysis) -> np.ndarray:
    """The solid tumour (non-enhancing + enhancing), or the whole tumour when it has no solid part."""
    solid = np.logical_or.reduce([analysis.regions.subregions[name] for name in TUMOUR_STATISTICS_REGION])
    return solid if solid.sum() >= 3 else analysis.regions.subregions["whole"]


def series_quality(analysis: PerfusionAnalysis, dr2: np.ndarray, leakage_reference: np.ndarray,
                   dual_echo: bool) -> QualityReport:
    """``dsc_curve_quality`` on the analysis' mean curves (solid tumour, white-matter reference, AIF)
    of signal and of ``dr2`` (t, z, y, x), the delta-R2* the rCBV came from."""
    region, reference = statistics_region(analysis), analysis.regions.reference & analysis.regions.brain
    dt = float(np.mean(np.diff(analysis.times_s)))
    fit = leakage_fit_r2(dr2[:, region].mean(axis=1).astype(np.float64), leakage_reference, dt, analysis.arrival)
    return dsc_curve_quality(analysis.signal[:, region].mean(axis=1), analysis.signal[:, reference].mean(axis=1),
                             analysis.aif.curve, dr2[:, reference].mean(axis=1), analysis.arrival,
                             float(analysis.statistics["rcbv_mean"]), fit, dual_echo)


def tumour_statistics(analysis: PerfusionAnalysis) -> dict[str, float | None]:
    """rCBV mean and 95th percentile in the solid tumour (whole tumour when it has no solid part),
    peak height and percentage signal recovery of the mean tumour curve."""
    region = statistics_region(analysis)
    values = analysis.rcbv[region]
    curve = analysis.signal[:, region].mean(axis=1).astype(np.float64)
    baseline = curve[1:analysis.arrival].mean()
    minimum = curve.min()
    post = curve[-max(3, len(curve) // 10):].mean()
    drop = baseline - minimum
    return {"rcbv_mean": float(values.mean()), "rcbv_p95": float(np.percentile(values, 95)),
            "rcbv_region": "whole tumour" if region is analysis.regions.subregions["whole"] else "solid tumour",
            "peak_height": float(drop / baseline) if baseline > 0 else None,
            "percentage_signal_recovery": float(100 * (post - minimum) / drop) if drop > 0 else None,
            "bolus_arrival_s": float(analysis.times_s[analysis.arrival])}
