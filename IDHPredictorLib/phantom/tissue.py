"""Structural MRI contrast from tissue physics: relaxation times, signal equations, scanner effects.

Relaxation times at 3 T (ms) and relative proton density:

* white / grey matter T1 832 / 1331, T2 80 / 110 (Wansapura et al., JMRI 1999;9:531);
  PD 0.69 / 0.80 (Tofts, Quantitative MRI of the Brain, 2003).
* CSF T1 ~4,300 (Rooney et al., MRM 2007;57:308), T2 ~2,000 (Spijkerman et al., MAGMA 2018), PD 1.
* oedema / non-enhancing glioma / enhancing glioma / necrosis: T1 1,250 / 1,350 / 1,250 / 2,200,
  T2 105 / 110 / 120 / 300 — prolonged relative to white matter as reported for oedema and
  glioma at 3 T (e.g. Blystad et al., PLoS One 2017), then tuned within that range so that the
  contrast profile (``realism.contrast_profile``) matches the two real TCGA-LGG cases.
* gadolinium: 1/T1 += r1 * C with gadobutrol r1 = 5.0 L/mmol/s at 3 T (Rohrer et al., Invest
  Radiol 2005;40:715), tissue concentration ~0.08-0.18 mmol/L in enhancing tumour.

Sequences (DESIGN.md): FLAIR TR 9000 / TE 99 / TI 2501 ms; T1c MPRAGE TR 1900 / TE 2.93 /
TI 900 ms, flip 9 degrees, modelled with the inversion-recovery magnitude equation, and the
same sequence before contrast for T1; T2 as a fast spin echo (TR 5000 / TE 100).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import Anatomy
from .traits import PatientTraits
from .tumour import Tumour

MODALITIES = ("t1", "t1ce", "t2", "flair")


@dataclass(frozen=True)
class Relaxation:
    """T1 and T2 in ms, proton density relative to CSF."""

    t1: float
    t2: float
    pd: float


TISSUE_RELAXATION = {
    "wm": Relaxation(832.0, 80.0, 0.69),
    "gm": Relaxation(1331.0, 110.0, 0.80),
    "csf": Relaxation(4300.0, 2000.0, 1.00),
    "oedema": Relaxation(1250.0, 105.0, 0.92),
    "nonenhancing": Relaxation(1350.0, 110.0, 0.90),
    "necrosis": Relaxation(2200.0, 300.0, 0.92),
    "enhancing": Relaxation(1250.0, 120.0, 0.88),
}
GADOBUTROL_R1 = 5.0e-3  # L/mmol/ms at 3 T


@dataclass(frozen=True)
class Sequence:
    """One weighting: repetition, echo and inversion time in ms (ti None = no inversion)."""

    tr: float
    te: float
    ti: float | None = None

    def signal(self, tissue: Relaxation) -> float:
        """Signal equation: spin echo PD(1-e^-TR/T1)e^-TE/T2, or its inversion-recovery magnitude."""
        if self.ti is None:
            longitudinal = 1.0 - np.exp(-self.tr / tissue.t1)
        else:
            longitudinal = abs(1.0 - 2.0 * np.exp(-self.ti / tissue.t1) + np.exp(-self.tr / tissue.t1))
        return float(tissue.pd * longitudinal * np.exp(-self.te / tissue.t2))


SEQUENCES = {
    "t1": Sequence(1900.0, 2.93, 900.0),
    "t1ce": Sequence(1900.0, 2.93, 900.0),
    "t2": Sequence(5000.0, 100.0),
    "flair": Sequence(9000.0, 99.0, 2501.0),
}


def patient_relaxation(rng: np.random.Generator, traits: PatientTraits) -> dict[str, Relaxation]:
    """Per-patient pre-contrast tissue values: +-5 % biological spread and the T2-FLAIR mismatch.

    Mismatch: the non-enhancing tumour's T1 is lengthened towards fluid (up to +0.7 s), so FLAIR
    suppresses it partly while T2 stays bright, as in IDH-mutant astrocytomas.
    """
    values = {}
    for name, base in TISSUE_RELAXATION.items():
        t1, t2, pd = base.t1 * rng.normal(1, 0.05), base.t2 * rng.normal(1, 0.05), base.pd * rng.normal(1, 0.02)
        if name == "nonenhancing":
            t1 += traits.mismatch * 700.0
            t2 += traits.mismatch * 60.0
        values[name] = Relaxation(t1, t2, pd)
    return values


def with_gadolinium(relaxation: dict[str, Relaxation], concentration_mmol: float) -> dict[str, Relaxation]:
    """Post-contrast values: enhancing tumour's 1/T1 rises by r1 * C (intact BBB elsewhere)."""
    enhancing = relaxation["enhancing"]
    t1 = 1.0 / (1.0 / enhancing.t1 + GADOBUTROL_R1 * concentration_mmol)
    return {**relaxation, "enhancing": Relaxation(t1, enhancing.t2, enhancing.pd)}


def tissue_fractions(anatomy: Anatomy, tumour: Tumour) -> dict[str, np.ndarray]:
    """Partial-volume fractions of every class; tumour classes replace brain tissue, CSF stays."""
    soft = {name: ndimage.gaussian_filter(mask.astype(np.float32), 0.6 / np.asarray(anatomy.grid.spacing[::-1]))
            for name, mask in tumour.classes.items()}
    tumour_total = np.clip(sum(soft.values()), 0.0, 1.0)
    parenchyma = anatomy.fractions["wm"] + anatomy.fractions["gm"]
    fractions = {name: anatomy.fractions[name] * (1.0 - tumour_total) for name in ("wm", "gm")}
    fractions["csf"] = anatomy.fractions["csf"] * (1.0 - tumour_total)
    for name, f in soft.items():
        fractions[name] = f * np.clip(parenchyma + anatomy.fractions["csf"], 0.0, 1.0)
    return fractions


def _bias_field(rng: np.random.Generator, shape: tuple[int, int, int], strength: float) -> np.ndarray:
    """Smooth multiplicative field exp(strength * low-order random polynomial), as from coil sensitivity."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    c = rng.normal(0, 1, size=7)
    poly = c[0] * x + c[1] * y + c[2] * z + c[3] * x * y + c[4] * y * z + c[5] * x * x + c[6] * z * z
    return np.exp(strength * poly / 3.0).astype(np.float32)


def synthesise_modality(rng: np.random.Generator, modality: str, fractions: dict[str, np.ndarray],
                        relaxation: dict[str, Relaxation], tumour: Tumour, heterogeneity: float) -> np.ndarray:
    """One weighted image (z, y, x) int16: mixed class signals, texture, bias field, Rician noise.

    Sequence timings are jittered +-3 % per patient; the scale puts white matter near 400-700
    counts like the real BraTS cases; noise sigma is 2-3 % of the white-matter signal.
    """
    base = SEQUENCES[modality]
    sequence = Sequence(base.tr * rng.normal(1, 0.03), base.te * rng.normal(1, 0.03),
                        None if base.ti is None else base.ti * rng.normal(1, 0.03))
    image = np.zeros_like(fractions["wm"])
    for name, fraction in fractions.items():
        image += np.float32(sequence.signal(relaxation[name])) * fraction
    tumour_mask = tumour.labels > 0
    image[tumour_mask] *= 1.0 + heterogeneity * tumour.texture[tumour_mask]
    wm_signal = sequence.signal(relaxation["wm"])
    brain = sum(fractions.values()) > 0.33
    image *= _bias_field(rng, image.shape, rng.uniform(0.1, 0.3))
    scale = rng.uniform(400, 700) / wm_signal
    sigma = rng.uniform(0.02, 0.03) * wm_signal
    inside = image[brain]  # skull-stripped, as in BraTS: noise only where there is brain
    real = inside + np.float32(sigma) * rng.standard_normal(inside.shape, dtype=np.float32)
    imaginary = np.float32(sigma) * rng.standard_normal(inside.shape, dtype=np.float32)
    noisy = np.zeros(image.shape, np.int16)
    noisy[brain] = np.clip(np.rint(np.hypot(real, imaginary) * scale), 0, 32767)
    return noisy
