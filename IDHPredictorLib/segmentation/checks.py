"""Quality checks on the network's input and output: intensity statistics against those the
model was trained on, and a tumour of plausible size."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..quality import QualityReport
from .data import NetworkInput

# Quantiles (percent) of each z-scored channel inside the brain, compared with the training cases'.
QUANTILES = tuple(range(5, 100, 5))
# Largest quantile difference (z units). Measured with the FLAIR + T1c model's training cases
# (phantom seed 1000): training cases 0.12-0.26, the four real cases 0.17-0.64 (the z-scored
# BraTS 2013 FLAIRs are the farthest), a negated FLAIR 0.94, a T2 given as FLAIR 1.17-1.33.
INTENSITY_WARN, INTENSITY_FAIL = 0.5, 0.85
# Whole tumour (with oedema) beyond this share of the brain or volume is not a glioma the model saw.
TUMOUR_BRAIN_SHARE_FAIL, TUMOUR_ML_FAIL = 0.35, 400.0
TUMOUR_ML_SMALL = 1.0


def intensity_quantiles(data: NetworkInput) -> np.ndarray:
    """(channels, len(QUANTILES)) quantiles of each z-scored channel inside the brain."""
    return np.stack([np.percentile(channel[data.brain], QUANTILES) for channel in data.channels])


def input_statistics(quantiles: list[np.ndarray], modalities: tuple[str, ...], source: str) -> dict[str, object]:
    """What a bundle records of its training input: the cases' mean ``intensity_quantiles`` per
    modality, and where they come from."""
    mean = np.mean(quantiles, axis=0)
    return {"quantiles_percent": list(QUANTILES), "source": source, "cases": len(quantiles),
            "modalities": {m: [round(float(v), 4) for v in row] for m, row in zip(modalities, mean)}}


def check_intensities(report: QualityReport, data: NetworkInput, modalities: tuple[str, ...],
                      statistics: dict | None) -> None:
    """Each channel's z-score quantiles against the training cases' (skipped, with a warning,
    for bundles that recorded none)."""
    if not statistics:
        report.add("intensities", "warn", "the model bundle records no training intensity statistics; not checked")
        return
    quantiles = intensity_quantiles(data)
    for modality, row in zip(modalities, quantiles):
        distance = float(np.max(np.abs(row - np.asarray(statistics["modalities"][modality]))))
        if not np.isfinite(distance) or distance > INTENSITY_FAIL:
            verdict, note = "fail", ("far from anything the model was trained on: a wrong series (e.g. T2 given as "
                                     "FLAIR), negated or corrupt intensities")
        elif distance > INTENSITY_WARN:
            verdict, note = "warn", "unlike the training cases: check the mask carefully"
        else:
            verdict, note = "pass", "within the training range"
        report.add(f"{modality}_intensities", verdict, f"z-score quantiles differ by up to {distance:.2f} from the "
                   f"training cases': {note}", distance)


def check_tumour(report: QualityReport, labels: np.ndarray, brain: np.ndarray, voxel_ml: float) -> None:
    """A tumour was found and its size is plausible."""
    whole = np.count_nonzero(labels) * voxel_ml
    brain_ml = max(np.count_nonzero(brain) * voxel_ml, 1e-9)
    if whole == 0:
        report.add("tumour", "warn", "no tumour found: check that the case has a glioma and the series are the right ones", 0.0)
    elif whole > TUMOUR_ML_FAIL or whole > TUMOUR_BRAIN_SHARE_FAIL * brain_ml:
        report.add("tumour", "fail", f"whole tumour {whole:.0f} mL ({100 * whole / brain_ml:.0f} % of the brain) is larger "
                   "than any plausible glioma: the input is not what the model expects", whole)
    elif whole < TUMOUR_ML_SMALL:
        report.add("tumour", "warn", f"whole tumour only {whole:.2f} mL: possibly a false positive", whole)
    else:
        report.add("tumour", "pass", f"whole tumour {whole:.1f} mL ({100 * whole / brain_ml:.1f} % of the brain)", whole)


def check_small_enhancing(report: QualityReport, relabelled_ml: float, min_enhancing_ml: float) -> None:
    """Say so when the bundle's smallest-enhancing-volume rule turned predicted enhancing into core
    (``postprocess.drop_small_enhancing``): the reader should know a small enhancing focus was seen."""
    if relabelled_ml > 0:
        report.add("enhancing", "warn", f"{relabelled_ml:.2f} mL of predicted enhancing tumour, below this model's "
                   f"smallest enhancing volume ({min_enhancing_ml:g} mL), shown as core: look at the T1c", relabelled_ml)


# Oedema is bright on FLAIR and near-isointense on T1c: inside the reference oedema of the four
# real cases the median FLAIR z-score is +1.44 to +2.44 and exceeds the T1c's by 1.16 to 2.63
# (full-size phantom: +1.61 to +1.94, by 1.2 to 1.5; one small phantom case has faint oedema,
# +0.48). Predicted oedema (whole tumour when there is none) darker on FLAIR than on T1c, or
# darker than the average brain on FLAIR, is not oedema: swapped or wrong series (fail); a
# difference under 0.9 is suspect (warn): swapped real cases measured +0.28 and +0.78 with the
# 2-D network. The 3-D network, trained with real-world tumour appearance, finds the tumour in
# swapped series too (differences +0.72 to +2.71 on the four real and six small phantom cases
# swapped, +0.17 to +2.21 as given), so for it the input check below is what catches a swap.
SWAP_MARGIN, SUSPECT_MARGIN = 0.0, 0.9
OEDEMA_MIN_FLAIR_Z = 0.0


def check_flair_t1ce_order(report: QualityReport, data: NetworkInput, modalities: tuple[str, ...],
                           box_labels: np.ndarray) -> None:
    """FLAIR and T1c given the wrong way round: the tumour is brighter on the "T1c" than on the "FLAIR"."""
    if not {"flair", "t1ce"} <= set(modalities):
        return
    oedema = box_labels == 2
    region = oedema if oedema.sum() >= 50 else box_labels > 0
    if region.sum() < 50:
        return
    flair, t1ce = (float(np.median(data.channels[modalities.index(m)][region])) for m in ("flair", "t1ce"))
    if flair - t1ce < SWAP_MARGIN or flair < OEDEMA_MIN_FLAIR_Z:
        report.add("flair_t1ce_order", "fail", f"the tumour found is not bright on the FLAIR (median z {flair:+.2f}, T1c "
                   f"{t1ce:+.2f}): FLAIR and T1c look swapped, or a series is not what its name says", flair - t1ce)
    elif flair - t1ce < SUSPECT_MARGIN:
        report.add("flair_t1ce_order", "warn", f"the tumour is only slightly brighter on FLAIR than on T1c (median z {flair:+.2f} "
                   f"vs {t1ce:+.2f}): check that the FLAIR and T1c series are not swapped", flair - t1ce)
    else:
        report.add("flair_t1ce_order", "pass", f"oedema brighter on FLAIR than on T1c (median z {flair:+.2f} vs {t1ce:+.2f})",
                   flair - t1ce)


# FLAIR and T1c swapped, seen without the network, by two cues that need no segmentation.
#
# 1. Bright-region shape: the brightest 3 % of the brain on FLAIR is the lesion, one compact
#    blob; on T1c it is vessels, choroid plexus and a thin enhancing rim. The share of the
#    largest bright component that survives a 2 mm erosion, FLAIR minus T1c, measured +0.25 to
#    +0.46 on the four real cases and the preprocessed raw case (so -0.25 to -0.46 swapped), but
#    -0.21 to +0.61 on 12 correct phantom cases, whose enhancement is more compact than real.
# 2. Tissue ordering with depth: white matter (deep) is brighter than cortex (superficial) on
#    T1c and darker on FLAIR. The median z-score deeper than 15 mm minus that 1.5-5 mm under the
#    brain's surface (darkest 20 % left out: CSF), T1c minus FLAIR, measured +0.75 to +1.35 on
#    the 12 phantom cases and -0.36 to +0.74 on the real ones (a large deep FLAIR lesion pulls
#    it down: BraTS2013-6).
#
# Both cues flip sign with the files swapped. A clear depth inversion (< -0.6) that the shapes do
# not contradict (< +0.25) is refused: this catches every swapped phantom case and swapped
# TCGA-DU-7294, and no correct case. Shapes alone below -0.25 warn (every swapped real case).
BRIGHT_PERCENTILE = 97.0
COMPACTNESS_SWAP_WARN, COMPACTNESS_CONTRADICTS_SWAP = -0.25, 0.25
DEPTH_ORDER_SWAP_FAIL = -0.6
SUPERFICIAL_MM, DEEP_MM = (1.5, 5.0), 15.0


def bright_region_compactness(channel: np.ndarray, brain: np.ndarray, spacing_mm: float) -> float:
    """Share of the largest connected region of the brightest ``BRIGHT_PERCENTILE`` % of the
    (edge-eroded) brain that survives a 2 mm erosion: near 0 for thin or scattered structures."""
    inner = ndimage.binary_erosion(brain, iterations=3)  # the bright cortical rim of FLAIR is not lesion
    if inner.sum() < 100:
        return 0.0
    bright = inner & (channel > np.percentile(channel[inner], BRIGHT_PERCENTILE))
    components, count = ndimage.label(bright)
    if count == 0:
        return 0.0
    largest = components == 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
    core = ndimage.binary_erosion(largest, iterations=max(1, round(2.0 / spacing_mm)))
    return float(core.sum() / largest.sum())


def depth_contrast(channel: np.ndarray, depth_mm: np.ndarray, brain: np.ndarray) -> float:
    """Median z-score of deep brain (white matter) minus that of the outer few mm (cortex), CSF
    (the darkest 20 %) left out: positive on T1-weighted images, negative on FLAIR."""
    kept = brain & (channel > np.percentile(channel[brain], 20))
    superficial = kept & (depth_mm > SUPERFICIAL_MM[0]) & (depth_mm < SUPERFICIAL_MM[1])
    deep = kept & (depth_mm > DEEP_MM)
    if superficial.sum() < 100 or deep.sum() < 100:
        return 0.0  # a brain too small to tell: no evidence either way
    return float(np.median(channel[deep]) - np.median(channel[superficial]))


def check_flair_t1ce_contrast(report: QualityReport, data: NetworkInput, modalities: tuple[str, ...],
                              spacing_zyx_mm: tuple[float, float, float]) -> None:
    """FLAIR and T1c files swapped, judged from tissue contrast before segmenting: refuse when the
    tissue ordering is clearly inverted and the bright-region shapes agree, warn on shapes alone."""
    if not {"flair", "t1ce"} <= set(modalities):
        return
    flair, t1ce = (data.channels[modalities.index(m)] for m in ("flair", "t1ce"))
    depth_mm = ndimage.distance_transform_edt(data.brain, sampling=spacing_zyx_mm)
    order = depth_contrast(t1ce, depth_mm, data.brain) - depth_contrast(flair, depth_mm, data.brain)
    in_plane_mm = float(np.mean(spacing_zyx_mm[1:]))
    shapes = bright_region_compactness(flair, data.brain, in_plane_mm) - bright_region_compactness(t1ce, data.brain, in_plane_mm)
    measured = f"(white matter against cortex, T1c minus FLAIR {order:+.2f}; bright-region compactness, FLAIR minus T1c {shapes:+.2f})"
    if order < DEPTH_ORDER_SWAP_FAIL and shapes < COMPACTNESS_CONTRADICTS_SWAP:
        report.add("flair_t1ce_contrast", "fail", f"white matter is brighter on the FLAIR than on the T1c {measured}: "
                   "FLAIR and T1c look swapped, or a series is not what its name says", order)
    elif shapes < COMPACTNESS_SWAP_WARN:
        report.add("flair_t1ce_contrast", "warn", f"the brightest region is compact on the T1c and thin on the FLAIR "
                   f"{measured}, the other way round from real scans: check that the FLAIR and T1c files are not swapped",
                   order)
    else:
        report.add("flair_t1ce_contrast", "pass", f"tissue contrast as expected of FLAIR and T1c {measured}", order)
