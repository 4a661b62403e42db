"""Per-patient clinical and imaging traits, drawn per IDH genotype from overlapping distributions.

Each continuous trait has a mutant and a wildtype mean and a common spread; ``effect`` scales
the distance of both means from their midpoint (1 = literature-like separation, 0 = no
genotype effect, 2 = twice as separable). Sources for the means:

* age: Choi et al. 2019 (~42 y mutant vs ~56 y wildtype); Li et al. 2017 (38.7 vs 43.5, grade II only)
* rCBV: 2.19 +- 0.90 mutant vs 2.94 +- 1.25 wildtype (DESIGN.md, heavily overlapping)
* imaging traits tied to IDH status in the literature: frontal predilection, sharp margins,
  homogeneous signal and T2-FLAIR mismatch in IDH-mutant tumours; ring enhancement, central
  necrosis, infiltrative oedema and heterogeneous texture in IDH-wildtype tumours.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Grade mix per genotype: counts of grade II, III, IV.
# choi: Choi et al. 2019 Table 1 (grade II 15 of 32 mutant, III 82 of 142, IV 28 of 289).
# li: Li et al. 2017, a grade-II-only cohort with 112 of 151 IDH1-mutant.
GRADE_MIX = {
    "choi": {"mutant": (15, 82, 28), "wildtype": (17, 60, 261)},
    "li": {"mutant": (112, 0, 0), "wildtype": (39, 0, 0)},
}
AGE = {"choi": (42.0, 56.0, 13.0), "li": (38.7, 43.5, 11.4)}  # mutant mean, wildtype mean, sd


@dataclass(frozen=True)
class PatientTraits:
    """Everything the simulator draws for one patient before building images."""

    idh_mutant: bool
    age: float
    sex: str
    grade: int
    frontal: bool
    whole_radius_mm: float       # radius of the whole-tumour (FLAIR abnormality) blob
    core_fraction: float         # core radius / whole radius
    margin_irregularity: float   # border noise amplitude (0 sharp .. 0.3 ragged)
    infiltration: float          # how far oedema runs along white matter
    heterogeneity: float         # within-tumour texture amplitude
    enhancing: bool              # any enhancing tumour at all
    ring_thickness: float        # enhancing rim as a fraction of the core radius
    necrosis_fraction: float     # fraction of the core radius that is necrotic (inside the ring)
    mismatch: float              # T2-FLAIR mismatch strength (0 none .. 1 strong)
    rcbv: float                  # solid-tumour CBV relative to normal white matter
    leakage: float               # Boxerman-Schmainda-Weisskoff K2 of enhancing tumour, 1/s

    def as_columns(self) -> dict[str, object]:
        """Ground-truth columns for clinical.csv (the simulator's hidden truth)."""
        row = asdict(self)
        row.pop("idh_mutant"), row.pop("age"), row.pop("sex"), row.pop("grade")
        renamed = {"rcbv": "rcbv_true", "leakage": "leakage_true"}
        return {renamed.get(k, k): (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def _between(effect: float, mutant: float, wildtype: float, idh_mutant: bool) -> float:
    """Group mean after scaling both means' distance from their midpoint by ``effect``."""
    mid = (mutant + wildtype) / 2.0
    return mid + effect * ((mutant if idh_mutant else wildtype) - mid)


def draw_traits(rng: np.random.Generator, idh_mutant: bool, effect: float = 1.0, mix: str = "choi") -> PatientTraits:
    """Draw one patient's traits; every draw goes through ``rng`` so a seed fixes the cohort."""
    def normal(mutant: float, wildtype: float, sd: float | tuple[float, float], lo: float, hi: float) -> float:
        spread = sd if isinstance(sd, float) else sd[0 if idh_mutant else 1]
        return float(np.clip(rng.normal(_between(effect, mutant, wildtype, idh_mutant), spread), lo, hi))

    def chance(mutant: float, wildtype: float) -> bool:
        return bool(rng.random() < np.clip(_between(effect, mutant, wildtype, idh_mutant), 0.0, 1.0))

    genotype = "mutant" if idh_mutant else "wildtype"
    counts = np.asarray(GRADE_MIX[mix][genotype], float)
    age_mut, age_wt, age_sd = AGE[mix]
    enhancing = chance(0.3, 0.85)
    return PatientTraits(
        idh_mutant=idh_mutant,
        age=round(normal(age_mut, age_wt, age_sd, 18.0, 88.0), 1),
        sex="M" if rng.random() < 0.55 else "F",
        grade=int(rng.choice([2, 3, 4], p=counts / counts.sum())),
        frontal=chance(0.65, 0.35),
        whole_radius_mm=normal(25.0, 28.0, 6.0, 12.0, 42.0),
        core_fraction=normal(0.75, 0.55, 0.1, 0.35, 0.9),
        margin_irregularity=normal(0.06, 0.18, 0.04, 0.01, 0.3),
        infiltration=normal(0.1, 0.35, 0.1, 0.0, 0.6),
        heterogeneity=normal(0.05, 0.15, 0.04, 0.01, 0.3),
        enhancing=enhancing,
        ring_thickness=normal(0.45, 0.25, 0.08, 0.12, 0.7) if enhancing else 0.0,
        necrosis_fraction=normal(0.1, 0.55, 0.15, 0.0, 0.8) if enhancing else 0.0,
        mismatch=normal(0.6, 0.15, 0.2, 0.0, 1.0),
        rcbv=normal(2.19, 2.94, (0.90, 1.25), 0.6, 7.0),
        leakage=normal(0.002, 0.008, 0.003, 0.0, 0.02) if enhancing else 0.0,
    )
