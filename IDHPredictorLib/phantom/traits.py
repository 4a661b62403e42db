"""Per-patient clinical and imaging traits, drawn per IDH genotype (and WHO grade) with effect
sizes as weak as in real cohorts.

Every single trait separates the genotypes only weakly to moderately (AUC <= 0.80 each; the
largest, age, as in Choi et al. 2019), and a logistic regression on all latent traits reaches
an AUC of about 0.85-0.93 (``Testing/Python/test_phantom.py`` holds both on 4,000-patient draws
of both mixes): about what the best published models reach on independent test sets, so a
method can still win or lose against the clinical baselines. ``effect`` scales every genotype
difference (1 = these sizes, 0 = none, 2 = twice as far apart).

Sources (numbers the simulator uses; where a paper gives no number, the effect size is our
estimate of "weak" or "moderate" and says so):

* Age by grade and genotype, grade mix: Choi et al. 2019, Table 1 (463 patients); Li et al.
  2017 (grade II, 38.7 vs 43.5 y).
* rCBV by grade and genotype: Choi et al. 2019, Results (LGG 2.11 +- 0.75 mutant vs 2.53 +- 1.25
  wildtype; GBM 2.49 +- 1.28 vs 3.07 +- 1.22), ranges largely overlapping.
* Enhancement: Choi et al. 2019 report a logistic regression on age and enhancement with AUC
  0.80 and specificity 90 % at sensitivity 42 %; enhancement rises with grade (grade IV: almost
  always) and is less frequent in IDH-mutant tumours of the same grade (Carrillo et al. 2012,
  AJNR 33:1349). Necrosis is the grade IV hallmark; IDH-mutant glioblastomas show less and
  cyst-like necrosis (Choi et al. 2019, Fig. 3 caption; Carrillo et al. 2012).
* T2-FLAIR mismatch sign: a binary sign, present in roughly a third to a half of IDH-mutant
  1p/19q-intact astrocytomas and almost never otherwise (Patel et al. 2017, Clin Cancer Res
  23:6078: specificity 100 %, sensitivity 22-51 %; Broen et al. 2018, Neuro Oncol 20:1393);
  oligodendrogliomas (about a third of the mutants) do not show it. Here present in 30 % of
  mutants, 1 % of wildtypes.
* Frontal location, sharp margins, homogeneous signal in IDH-mutant, infiltrative oedema in
  IDH-wildtype tumours: reported as associations with overlapping groups (Qi et al. 2014, Oncol
  Lett 7:1895; Carrillo et al. 2012); no paper gives a usable effect size, so each is weak here
  (Cohen's d 0.3-0.5, single-trait AUC 0.58-0.64).
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


# Age (mean, sd) by genotype and grade: Choi et al. 2019 Table 1; Li et al. 2017 for grade II only.
AGE_BY_GRADE = {
    "choi": {"mutant": {2: (44.3, 10.9), 3: (40.9, 10.2), 4: (43.4, 13.9)},
             "wildtype": {2: (48.7, 16.3), 3: (52.2, 15.2), 4: (57.5, 13.5)}},
    "li": {"mutant": {2: (38.7, 11.4)}, "wildtype": {2: (43.5, 11.4)}},
}
# rCBV (mean, sd) by genotype for lower grades (II-III) and grade IV: Choi et al. 2019.
RCBV = {"mutant": {"lgg": (2.11, 0.75), "gbm": (2.49, 1.28)}, "wildtype": {"lgg": (2.53, 1.25), "gbm": (3.07, 1.22)}}
# Probability of contrast enhancement by grade, mutant vs wildtype (grade drives it; IDH-mutant
# tumours enhance somewhat less often at the same grade).
ENHANCING = {2: (0.20, 0.30), 3: (0.40, 0.50), 4: (0.94, 0.96)}
# Probability of (central) necrosis in an enhancing tumour, by grade, mutant vs wildtype.
NECROTIC = {2: (0.05, 0.08), 3: (0.15, 0.18), 4: (0.75, 0.80)}
# T2-FLAIR mismatch sign by grade, mutant vs wildtype: a sign of lower-grade (non-enhancing)
# astrocytomas, rare in IDH-mutant glioblastomas.
MISMATCH_PRESENT = {2: (0.45, 0.01), 3: (0.45, 0.01), 4: (0.10, 0.0)}


def _between(effect: float, mutant: float, wildtype: float, idh_mutant: bool) -> float:
    """Group mean after scaling both means' distance from their midpoint by ``effect``."""
    mid = (mutant + wildtype) / 2.0
    return mid + effect * ((mutant if idh_mutant else wildtype) - mid)


def draw_traits(rng: np.random.Generator, idh_mutant: bool, effect: float = 1.0, mix: str = "choi") -> PatientTraits:
    """Draw one patient's traits; every draw goes through ``rng`` so a seed fixes the cohort.
    Grade comes first: age, rCBV, enhancement and necrosis depend on it and on the genotype."""
    genotype, other = ("mutant", "wildtype") if idh_mutant else ("wildtype", "mutant")

    def normal(mutant: float, wildtype: float, sd: float, lo: float, hi: float) -> float:
        return float(np.clip(rng.normal(_between(effect, mutant, wildtype, idh_mutant), sd), lo, hi))

    def chance(mutant: float, wildtype: float) -> bool:
        return bool(rng.random() < np.clip(_between(effect, mutant, wildtype, idh_mutant), 0.0, 1.0))

    def by_grade(table: dict, key: object) -> tuple[float, float, float]:
        """(mutant mean, wildtype mean, this genotype's sd) of a (mean, sd) table."""
        mine, theirs = table[genotype][key], table[other][key]
        mutant_mean, wildtype_mean = (mine[0], theirs[0]) if idh_mutant else (theirs[0], mine[0])
        return mutant_mean, wildtype_mean, mine[1]

    counts = np.asarray(GRADE_MIX[mix][genotype], float)
    grade = int(rng.choice([2, 3, 4], p=counts / counts.sum()))
    enhancing = chance(*ENHANCING[grade])
    necrotic = enhancing and chance(*NECROTIC[grade])
    return PatientTraits(
        idh_mutant=idh_mutant,
        age=round(normal(*by_grade(AGE_BY_GRADE[mix], grade), 18.0, 88.0), 1),
        sex="M" if rng.random() < 0.55 else "F",
        grade=grade,
        frontal=chance(0.55, 0.40),
        whole_radius_mm=normal(25.0, 27.0, 6.0, 12.0, 42.0),
        core_fraction=normal(0.668, 0.632, 0.12, 0.35, 0.9),
        margin_irregularity=normal(0.118, 0.142, 0.08, 0.01, 0.3),
        infiltration=normal(0.194, 0.236, 0.14, 0.0, 0.6),
        heterogeneity=normal(0.091, 0.109, 0.06, 0.01, 0.3),
        enhancing=enhancing,
        ring_thickness=normal(0.32, 0.30, 0.1, 0.12, 0.7) if enhancing else 0.0,
        necrosis_fraction=normal(0.45, 0.55, 0.12, 0.25, 0.8) if necrotic else 0.0,
        mismatch=float(rng.uniform(0.6, 1.0)) if chance(*MISMATCH_PRESENT[grade]) else 0.0,
        rcbv=normal(*by_grade(RCBV, "gbm" if grade == 4 else "lgg"), 0.6, 7.0),
        leakage=normal(0.005, 0.0055, 0.003, 0.0, 0.02) if enhancing else 0.0,
    )
