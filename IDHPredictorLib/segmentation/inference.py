"""Dense inference: whole axial slices through the fully convolutional network, in batches.

The network yields one prediction every 4 pixels (two stride-2 poolings); class probabilities
are brought back to full resolution by bicubic interpolation (as in the paper), then argmax,
brain masking and post-processing. The output label map has the input's exact geometry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from ..io.case import Case
from ..preprocessing.prepare import PreparedCase
from ..quality import QualityReport
from .checks import (
    check_flair_t1ce_contrast,
    check_flair_t1ce_order,
    check_intensities,
    check_small_enhancing,
    check_tumour,
)
from .data import NetworkInput, axial_case, network_input, pad_for_patches
from .model_bundle import SegmentationModel, load_model
from .network import CLASS_TO_LABEL, STRIDE, SegmentationCNN
from .postprocess import drop_small_enhancing, postprocess


def choose_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def mixed_precision(device: torch.device, enabled: bool | None = None) -> torch.autocast:
    """bfloat16 autocast (inference, and the 3-D network's training): by default on CUDA only, where
    it is the fast path; the 3-D trainer also switches it on for CPUs that compute it natively
    (``native_bfloat16``), and the tests for CPU inference to check the labels stay close to float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" if enabled is None else enabled)


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: CUDA, or a CPU with AVX-512 BF16 or AMX
    (there bfloat16 autocast trains the 3-D network about 2.4 times as fast as float32, measured
    on a 2-core AMD EPYC; elsewhere oneDNN emulates it and it is slower)."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


_LOADED: dict[tuple[str, str], tuple[tuple, SegmentationModel]] = {}


def loaded_model(bundle: str, device: str = "auto") -> SegmentationModel:
    """The bundle at ``bundle`` (an absolute path) on ``device`` (auto: this process's best), loaded
    again only when its files change: a worker that runs many cases' tasks loads each model once."""
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(Path(bundle).iterdir()))
    key = (bundle, device)
    if key not in _LOADED or _LOADED[key][0] != stamp:
        _LOADED[key] = (stamp, load_model(bundle, choose_device(device)))
    return _LOADED[key][1]


@torch.no_grad()
def dense_scores(model: SegmentationCNN, channels: np.ndarray, z_batch: int = 8,
                 progress: Callable[[int, int], None] | None = None, mixed: bool | None = None) -> np.ndarray:
    """Raw class scores on the stride-4 lattice: (4, z, ceil((y-1)/4)+1, ceil((x-1)/4)+1); entry
    (k, z, i, j) scores the patch centred on voxel (z, 4i, 4j). ``mixed``: bfloat16 autocast
    (default: on CUDA only; see ``mixed_precision``)."""
    model.eval()
    device = next(model.parameters()).device
    _, depth, height, width = channels.shape
    # pad y, x up to 4k + 1 so that the last lattice point lies at or beyond the last voxel
    extra_y, extra_x = (-(height - 1)) % STRIDE, (-(width - 1)) % STRIDE
    padded = pad_for_patches(np.pad(channels, ((0, 0), (0, 0), (0, extra_y), (0, extra_x))))
    out = None
    for start in range(0, depth, z_batch):
        batch = torch.from_numpy(np.ascontiguousarray(padded[:, start:start + z_batch].transpose(1, 0, 2, 3)))
        with mixed_precision(device, mixed):
            scores = model(batch.to(device)).float().cpu().numpy()  # (b, 4, h, w)
        if out is None:
            out = np.empty((scores.shape[1], depth, *scores.shape[2:]), np.float32)
        out[:, start:start + len(scores)] = scores.transpose(1, 0, 2, 3)
        if progress is not None:
            progress(min(start + z_batch, depth), depth)
    return out


def probabilities_full_resolution(scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """Softmax on the lattice, bicubic up-sampling (lattice points kept exactly), crop: (4, z, y, x)."""
    probabilities = torch.softmax(torch.from_numpy(scores), dim=0).permute(1, 0, 2, 3)  # (z, 4, h, w)
    h, w = probabilities.shape[2:]
    upsampled = F.interpolate(probabilities, size=((h - 1) * STRIDE + 1, (w - 1) * STRIDE + 1),
                              mode="bicubic", align_corners=True)
    return upsampled[:, :, :height, :width].permute(1, 0, 2, 3).clamp_(0, 1).numpy()


def predict_labels(model: SegmentationCNN, channels: np.ndarray, brain: np.ndarray,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """BraTS label map (z, y, x) of the brain box, before post-processing."""
    scores = dense_scores(model, channels, progress=progress)
    probabilities = probabilities_full_resolution(scores, *channels.shape[2:])
    labels = np.asarray(CLASS_TO_LABEL, np.uint8)[probabilities.argmax(axis=0)]
    labels[~brain] = 0
    return labels


def segment_case(model: torch.nn.Module, modalities: tuple[str, ...], case: Case, postprocessing: bool = True,
                 progress: Callable[[int, int], None] | None = None, min_enhancing_ml: float = 0.0) -> sitk.Image:
    """Segment ``case``: labels 1/2/4 on the case's reference grid (same origin, spacing, direction).

    The images are first permuted/flipped to LPS axes (numpy axis 0 = inferior-superior: the 2-D
    network works on axial slices) and the labels are mapped back (nearest neighbour, exact for an
    axis permutation). The 2-D network keeps the voxel size; a 3-D network runs at its training
    voxel size (``volumetric.predict_volume_labels``). ``min_enhancing_ml``: a bundle's
    ``SegmentationModel.min_enhancing_ml`` (see ``postprocess``).
    """
    axial = axial_case(case, modalities)
    data = network_input(axial, modalities, with_labels=False)
    box_labels = _box_labels(model, data, postprocessing, progress, axial.reference.GetSpacing()[::-1])
    if postprocessing:
        drop_small_enhancing(box_labels, min_enhancing_ml, axial.reference.GetSpacing())
    return _labels_on_grid(box_labels, data, axial.reference, case.reference)


def _box_labels(model: torch.nn.Module, data: NetworkInput, postprocessing: bool,
                progress: Callable[[int, int], None] | None,
                spacing: tuple[float, float, float] | None = None) -> np.ndarray:
    """Labels of the brain box (axial LPS axes), post-processed and kept inside the brain.
    ``spacing`` (z, y, x mm) lets a 3-D network resample to its training voxel size; the 2-D
    network works on the voxels as they are."""
    if isinstance(model, SegmentationCNN):
        box_labels = predict_labels(model, data.channels, data.brain, progress)
    else:
        from .volumetric import predict_volume_labels

        box_labels = predict_volume_labels(model, data.channels, data.brain, spacing, progress)
    if postprocessing and box_labels.any():
        box_labels = postprocess(box_labels)
        box_labels[~data.brain] = 0  # box smoothing can spill over the brain's edge
    return box_labels


def _labels_on_grid(box_labels: np.ndarray, data: NetworkInput, axial_reference: sitk.Image,
                    reference: sitk.Image) -> sitk.Image:
    """Brain-box labels placed in the full axial volume and returned on ``reference``'s grid."""
    labels = np.zeros(data.full_shape, np.uint8)
    labels[data.box] = box_labels
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(axial_reference)
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


@dataclass
class Segmentation:
    """Labels on the input's original reference grid, the same on the prepared grid, and the
    quality verdicts of preparation, network input and result."""

    labels: sitk.Image
    prepared_labels: sitk.Image
    quality: QualityReport
    preparation: PreparedCase


def checked_network_input(model: SegmentationModel, axial: Case, quality: QualityReport) -> NetworkInput:
    """The network's input for an axial case (``axial_case``), its intensities checked against
    the bundle's training statistics; the verdicts join ``quality``. Used before segmenting and
    before DLR on a given mask, whose descriptors come from the same network."""
    data = network_input(axial, model.modalities, with_labels=False)
    check_intensities(quality, data, model.modalities, model.record.get("input_statistics"))
    check_flair_t1ce_contrast(quality, data, model.modalities, axial.reference.GetSpacing()[::-1])
    return data


def segment_prepared(model: SegmentationModel, prepared: PreparedCase, postprocessing: bool = True,
                     progress: Callable[[int, int], None] | None = None) -> Segmentation:
    """Segment a prepared case with quality control: input intensities against the bundle's
    training statistics, then a tumour of plausible size. A failed check raises ``InputError``."""
    case = prepared.case
    axial = axial_case(case, model.modalities)
    quality = QualityReport(list(prepared.quality.checks))
    data = checked_network_input(model, axial, quality)
    quality.raise_if_failed(case.folder)
    box_labels = _box_labels(model.network, data, postprocessing, progress, axial.reference.GetSpacing()[::-1])
    if postprocessing:
        check_small_enhancing(quality, drop_small_enhancing(box_labels, model.min_enhancing_ml,
                                                            axial.reference.GetSpacing()), model.min_enhancing_ml)
    labels = _labels_on_grid(box_labels, data, axial.reference, case.reference)
    check_flair_t1ce_order(quality, data, model.modalities, box_labels)
    voxel_ml = float(np.prod(case.reference.GetSpacing())) / 1000.0
    check_tumour(quality, sitk.GetArrayViewFromImage(labels), sitk.GetArrayViewFromImage(case.brain) > 0
                 if case.brain is not None else data.brain, voxel_ml)
    quality.raise_if_failed(case.folder)
    return Segmentation(prepared.to_native(labels), labels, quality, prepared)
