"""SimpleITK preprocessing steps on phantom images: z-score, rigid registration, N4, resampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from IDHPredictorLib.io.cohort import case_folders
from IDHPredictorLib.preprocessing import brain_mask, n4_bias_correction, register_rigid, resample_to, zscore_array


def _image(cohort: Path, modality: str) -> sitk.Image:
    case = case_folders(cohort)[0]
    return sitk.Cast(sitk.ReadImage(str(case / f"{case.name}_{modality}.nii.gz")), sitk.sitkFloat32)


def test_zscore_inside_the_brain(small_cohort: Path) -> None:
    flair = _image(small_cohort, "flair")
    inside = sitk.GetArrayFromImage(brain_mask(flair)).astype(bool)
    z = zscore_array(sitk.GetArrayFromImage(flair), inside)
    assert abs(z[inside].mean()) < 1e-4 and abs(z[inside].std() - 1.0) < 1e-3
    assert not z[~inside].any()


def test_rigid_registration_recovers_a_known_motion(small_cohort: Path) -> None:
    fixed = _image(small_cohort, "t1ce")
    truth = sitk.Euler3DTransform(fixed.TransformContinuousIndexToPhysicalPoint([s / 2 for s in fixed.GetSize()]),
                                  np.deg2rad(4.0), np.deg2rad(-3.0), np.deg2rad(5.0), (4.0, -3.0, 2.5))
    moving = resample_to(_image(small_cohort, "flair"), fixed, truth.GetInverse())  # a FLAIR moved off the T1c
    found = register_rigid(fixed, moving)
    brain = np.argwhere(sitk.GetArrayFromImage(brain_mask(fixed)))[::50, ::-1]
    points = [fixed.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in brain]
    # moving(p) = flair(truth^-1(p)), so the transform that maps fixed points into moving space is truth itself
    error = [np.linalg.norm(np.subtract(found.TransformPoint(p), truth.TransformPoint(p))) for p in points]
    assert np.mean(error) < 1.5, f"mean target registration error {np.mean(error):.2f} mm"


def test_n4_removes_a_known_bias_field(small_cohort: Path) -> None:
    t1 = _image(small_cohort, "t1")
    array = sitk.GetArrayFromImage(t1)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in array.shape], indexing="ij")
    biased = sitk.GetImageFromArray((array * np.exp(0.35 * (x + 0.5 * y))).astype(np.float32))
    biased.CopyInformation(t1)
    white_matter = (array > np.percentile(array[array > 0], 75))

    def spread(image: sitk.Image) -> float:
        values = sitk.GetArrayFromImage(image)[white_matter]
        return float(values.std() / values.mean())

    corrected = n4_bias_correction(biased)
    assert spread(corrected) < 0.7 * spread(biased)
