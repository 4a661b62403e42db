"""Deep descriptors (Li et al. 2017, "Selection of deep filter responses"): the segmentation CNN
used as a filter bank on the tumour region of each tumour slice at 10 scales from 0.5 to 2; the
responses of one layer at positions inside the rescaled tumour mask are a patient's descriptors.

Slices are taken every ``slice_spacing_mm`` through the tumour (default 5 mm, the slice spacing
of the paper's clinical 2-D acquisitions; the phantom's 1 mm slices are nearly identical
neighbours), and at most ``max_descriptors`` are kept per patient by a seeded random draw: a
Fisher vector is a mean over descriptors, so a large sample estimates it well and the cost of
encoding and of the on-disk cache stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.case import Case
from ..io.images import labels_on_grid, same_grid
from ..segmentation.data import axial_case, network_input
from ..segmentation.network import LAYER_GEOMETRY, LAYERS, SegmentationCNN

WHOLE_TUMOUR_LABELS = (1, 2, 3, 4)


@dataclass(frozen=True)
class DescriptorOptions:
    """How descriptors are sampled; part of the cache key."""

    scales: tuple[float, ...] = tuple(float(s) for s in np.round(np.geomspace(0.5, 2.0, 10), 4))
    slice_spacing_mm: float = 5.0
    max_descriptors: int = 8192
    seed: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def tumour_mask(labels: sitk.Image) -> sitk.Image:
    """Whole-tumour mask (every non-zero BraTS label) as UInt8 0/1."""
    return sitk.Cast(labels > 0, sitk.sitkUInt8)


def deep_descriptors(network: SegmentationCNN, modalities: tuple[str, ...], case: Case, mask: sitk.Image,
                     layers: tuple[str, ...] = ("conv6",), options: DescriptorOptions = DescriptorOptions(),
                     progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Descriptors (n, channels) float32 of each of ``layers`` for ``case`` inside ``mask``.

    ``mask`` is a label map or a corrected segmentation (resampled, nearest neighbour, onto the
    case's grid when it is on another). The
    images are reoriented to axial LPS as for segmentation and z-scored inside the brain the way
    the network was trained.
    """
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown:
        raise InputError(None, f"unknown layer {', '.join(unknown)}", f"Choose from {', '.join(LAYERS)}")
    if not same_grid(mask, case.reference):
        mask = labels_on_grid(mask, case.reference)
    axial = axial_case(case, modalities)
    data = network_input(axial, modalities, with_labels=False)
    tumour = sitk.GetArrayFromImage(sitk.DICOMOrient(tumour_mask(mask), "LPS"))[data.box] > 0
    tumour &= data.brain
    if not tumour.any():
        raise InputError(case.files.get("seg", case.folder), "the tumour mask is empty inside the brain",
                         "Segment the case (idh-predictor segment) or correct the mask so it covers the tumour")
    spacing_z = axial.reference.GetSpacing()[2]
    slices = _sampled_slices(np.flatnonzero(tumour.any(axis=(1, 2))), spacing_z, options.slice_spacing_mm)
    device = next(network.parameters()).device
    collected: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    margin = max(LAYER_GEOMETRY[layer][1] for layer in layers)
    for done, scale in enumerate(options.scales):
        for image, region in _scaled_crops(data.channels[:, slices], tumour[slices], scale, margin):
            with torch.inference_mode():
                outputs = network.layer_outputs(image[None].to(device), layers)
            for layer, activations in outputs.items():
                stride, offset = LAYER_GEOMETRY[layer]
                height, width = activations.shape[-2:]
                inside = region[offset:offset + stride * height:stride, offset:offset + stride * width:stride].to(device)
                collected[layer].append(activations[0].permute(1, 2, 0)[inside].float().cpu().numpy())
        if progress:
            progress(done + 1, len(options.scales))
    generator = np.random.default_rng(options.seed)
    result = {}
    for layer, parts in collected.items():
        descriptors = np.concatenate(parts)
        if len(descriptors) > options.max_descriptors:
            keep = np.sort(generator.choice(len(descriptors), options.max_descriptors, replace=False))
            descriptors = descriptors[keep]
        result[layer] = np.ascontiguousarray(descriptors, dtype=np.float32)
    return result


def _sampled_slices(tumour_slices: np.ndarray, spacing_z: float, spacing_mm: float) -> np.ndarray:
    """Every ``spacing_mm`` through the tumour's slices, centred on its extent."""
    step = max(1, int(round(spacing_mm / spacing_z)))
    first, last = int(tumour_slices.min()), int(tumour_slices.max())
    start = first + ((last - first) % step) // 2
    candidates = np.arange(start, last + 1, step)
    present = np.isin(candidates, tumour_slices)
    return candidates[present] if present.any() else tumour_slices[:1]


def _scaled_crops(channels: np.ndarray, tumour: np.ndarray, scale: float,
                  margin: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Per tumour slice: the crop rescaled by ``scale`` (C, H, W) and its tumour mask (H, W).

    The crop is the tumour's bounding box plus enough real context that, after rescaling, every
    tumour position has ``margin`` pixels of image around it (the receptive field of the deepest
    requested layer), then zero-padded by ``margin`` so tumour at the volume's edge is sampled too.
    Slices are run one at a time: batching crops of different sizes would compute padding.
    """
    context = int(np.ceil(margin / scale)) + 1
    for index in range(tumour.shape[0]):
        ys, xs = np.nonzero(tumour[index])
        if len(ys) == 0:
            continue
        y0, y1 = max(ys.min() - context, 0), min(ys.max() + context + 1, tumour.shape[1])
        x0, x1 = max(xs.min() - context, 0), min(xs.max() + context + 1, tumour.shape[2])
        size = (max(int(round((y1 - y0) * scale)), 1), max(int(round((x1 - x0) * scale)), 1))
        image = torch.from_numpy(np.ascontiguousarray(channels[:, index, y0:y1, x0:x1]))[None]
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
        region = torch.from_numpy(tumour[index, y0:y1, x0:x1].astype(np.float32))[None, None]
        region = F.interpolate(region, size=size, mode="bilinear", align_corners=False) >= 0.5
        yield F.pad(image, (margin,) * 4)[0], F.pad(region, (margin,) * 4)[0, 0]
