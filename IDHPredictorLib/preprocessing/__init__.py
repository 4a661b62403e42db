"""Preprocessing: find the brain in any input, and bring raw scans to the network's form
(reorientation, co-registration, skull stripping, N4, 1 mm resampling)."""

from .steps import brain_mask, n4_bias_correction, register_rigid, resample_to, zscore_array

__all__ = ["brain_mask", "n4_bias_correction", "register_rigid", "resample_to", "zscore_array"]
