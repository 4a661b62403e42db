"""Structural MRI contrast from tissue physics: relaxation times, signal equations, scanner effects.

Relaxation times at 3 T (ms) and relative proton density:

* white / grey matter T1 832 / 1331, T2 80 / 110 (Wansapura et al., JMRI 1999;9:531);
  PD 0.69 / 0.80 (Tofts, Quantitative MRI of the Brain, 2003).
* CSF T1 ~4,300 (Rooney et al., MRM 2007;57:308), T2 ~2,000 (Spijkerman et al., MAGMA 2018), PD 1.
* oedema / non-enhancing glioma / enhancing glioma / necrosis: T1 1,350 / 1,350 / 1,450 / 2,200,
  T2 110 / 110 / 120 / 300 — prolonged relative to white matter as reported for oedema and
  glioma at 3 T (e.g. Blystad et al., PLoS One 2017), then tuned within that range so that the
  contrast profile (``realism.contrast_profile``) matches the real cases. Oedema (T1 / T2 were
  1,250 / 105) and the pre-contrast enhancing tumour (T1 was 1,250) were lengthened: at 1,250
  ms the phantom's oedema was nearly as bright as white matter on T1 / T1c (median signal 0.90
  x white matter; real TCGA cases 0.67 / 0.75 on T1, 0.63 / 0.99 on T1c) and its enhancing
  tumour too bright before contrast (0.87-1.03 x, real 0.70). Oedema at 1,450 ms overshot
  (T1 0.54-0.68 x, FLAIR 1.0-1.4 x against the real 1.36 / 1.53 x), hence 1,350 ms with T2
  110 ms; all inside the ranges reported for peritumoral oedema and tumour with relaxometry at
  3 T (Blystad et al. 2017; Blystad et al., Sci Rep 2020;10:17986).
* necrosis varies per patient from proteinaceous (T1 2,200 / T2 300: bright on FLAIR) to
  fluid-like (up to T1 3,600 / T2 800, near the FLAIR null T1 = TI / ln 2 ~ 3.6 s: dark on
  FLAIR and T1c), as cystic-necrotic glioblastoma cores are (one expert-labelled BraTS-2013
  case has its necrotic core 1 brain-sd below normal brain on FLAIR, another 1 sd above).
* tumour classes get a wider per-patient spread (T1 / T2 +-8 %) than normal tissue (+-5 %).
* gadolinium: 1/T1 += r1 * C with gadobutrol r1 = 5.0 L/mmol/s at 3 T (Rohrer et al., Invest
  Radiol 2005;40:715), tissue concentration ~0.05-0.11 mmol/L in enhancing tumour (was
  0.08-0.18: enhancing tumour came out at 1.6-1.85 x white matter on T1c and 3.4-4.3 brain-sd
  above normal brain, against 1.18 x and 1.0-1.4 sd in the real cases).

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
    "oedema": Relaxation(1350.0, 110.0, 0.92),
    "nonenhancing": Relaxation(1350.0, 110.0, 0.90),
    "necrosis": Relaxation(2200.0, 300.0, 0.92),
    "enhancing": Relaxation(1450.0, 120.0, 0.88),
}
TUMOUR_SPREAD = 0.08  # per-patient T1 / T2 sd of the tumour classes (normal tissue: 0.05)
FLUID_NECROSIS = Relaxation(3600.0, 800.0, 0.95)  # the fluid-like end of the necrosis range
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
    """Per-patient pre-contrast tissue values: biological spread (+-5 % normal tissue, +-8 %
    tumour), necrosis between proteinaceous and fluid-like, and the T2-FLAIR mismatch.

    Mismatch: the non-enhancing tumour's T1 is lengthened towards fluid (up to +0.7 s), so FLAIR
    suppresses it partly while T2 stays bright, as in IDH-mutant astrocytomas.
    """
    values = {}
    fluid = rng.uniform() ** 2  # necrosis from proteinaceous (0) to fluid-like (1), mostly the former
    for name, base in TISSUE_RELAXATION.items():
        if name == "necrosis":
            base = Relaxation(*(b + fluid * (f - b) for b, f in zip((base.t1, base.t2, base.pd),
                                                                    (FLUID_NECROSIS.t1, FLUID_NECROSIS.t2, FLUID_NECROSIS.pd))))
        spread = 0.05 if name in ("wm", "gm", "csf") else TUMOUR_SPREAD
        t1, t2, pd = base.t1 * rng.normal(1, spread), base.t2 * rng.normal(1, spread), base.pd * rng.normal(1, 0.02)
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
