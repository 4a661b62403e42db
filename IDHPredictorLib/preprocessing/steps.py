"""Structural preprocessing steps with SimpleITK: N4 bias correction, rigid registration,
resampling, brain-mask z-scoring. Each takes and returns SimpleITK images or arrays, so geometry
is never lost; ``prepare`` chains them."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError


def brain_mask(image: sitk.Image) -> sitk.Image:
    """Brain mask of a skull-stripped image: non-zero voxels, holes filled (UInt8)."""
    mask = sitk.Cast(sitk.NotEqual(image, 0), sitk.sitkUInt8)
    return sitk.BinaryFillhole(mask)


def n4_bias_correction(image: sitk.Image, mask: sitk.Image | None = None, shrink: int = 4,
                       iterations: tuple[int, ...] = (50, 50, 30)) -> sitk.Image:
    """N4 (Tustison et al., IEEE TMI 2010) fitted on a ``shrink``-times smaller copy for speed,
    then the bias field is evaluated at full resolution and divided out."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    mask = brain_mask(image) if mask is None else mask
    small = sitk.Shrink(image, [shrink] * image.GetDimension())
    small_mask = sitk.Shrink(mask, [shrink] * image.GetDimension())
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(iterations))
    corrector.Execute(small, small_mask)
    log_bias = corrector.GetLogBiasFieldAsImage(image)
    corrected = sitk.Divide(image, sitk.Exp(log_bias))
    return sitk.Mask(corrected, mask)


def register_rigid(fixed: sitk.Image, moving: sitk.Image, sampling: float = 0.05, seed: int = 0,
                   pyramid: tuple[tuple[int, float], ...] = ((4, 2.0), (2, 1.0), (1, 0.0))) -> sitk.Transform:
    """Rigid (6-parameter) transform taking ``fixed`` points into ``moving`` space.

    Mattes mutual information (works across contrasts), centred-geometry initialisation,
    a pyramid of (shrink factor, smoothing sigma in mm) levels, regular step gradient descent;
    a fixed sampling seed and one thread make it repeatable. Resample ``moving`` with the result
    to bring it onto ``fixed``.
    """
    fixed32, moving32 = sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(fixed32, moving32, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=200,
                                                    relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([shrink for shrink, _ in pyramid])
    method.SetSmoothingSigmasPerLevel([sigma for _, sigma in pyramid])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    method.SetNumberOfThreads(1)  # ITK's threaded metric sums in a varying order: one thread makes the seed enough
    return method.Execute(fixed32, moving32)


def resample_to(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None = None,
                labels: bool = False) -> sitk.Image:
    """Resample onto ``reference``'s grid: linear for intensities, nearest neighbour for labels."""
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    return sitk.Resample(image, reference, transform or sitk.Transform(), interpolator, 0.0, image.GetPixelID())


def zscore_array(volume: np.ndarray, inside: np.ndarray, source: object = None) -> np.ndarray:
    """Float32 array with zero mean and unit sd inside the boolean mask ``inside``, 0 outside.
    ``source`` (a path or name) is what an error message names."""
    if inside.sum() < 2:
        raise InputError(source, "brain mask is empty, cannot z-score", "Check that the image is skull-stripped, not blank")
    values = volume[inside].astype(np.float64)  # float64: intensities scaled by 1e30 must not overflow
    mean, sd = values.mean(), values.std()
    if not np.isfinite(sd) or sd == 0:
        raise InputError(source, "image is constant inside the brain" if sd == 0 else "intensities overflow",
                         "Check the image export")
    return np.where(inside, (volume - mean) / sd, 0.0).astype(np.float32)
