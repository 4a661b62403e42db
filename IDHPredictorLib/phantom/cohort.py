"""Generate and write a phantom cohort: one BraTS-layout folder per patient plus clinical.csv."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..bundle import provenance
from ..compute import all_succeeded, map_cases
from ..io.atomic import atomic_directory, atomic_path
from ..io.cohort import PHANTOM_RECORD
from .anatomy import BRATS_GRID, SMALL_GRID, deformed_anatomy
from .dsc import SimulatedDsc, simulate_dsc
from .tissue import MODALITIES, patient_relaxation, synthesise_modality, tissue_fractions, with_gadolinium
from .traits import GRADE_MIX, PatientTraits, draw_traits
from .tumour import make_tumour


@dataclass(frozen=True)
class PhantomOptions:
    """What to simulate. ``effect`` scales every genotype difference (0 = none, 1 = literature)."""

    cases: int = 20
    seed: int = 0
    size: str = "full"          # "full": BraTS 240x240x155 @ 1 mm; "small": same FOV @ 2.5 mm
    effect: float = 1.0
    mix: str = "choi"           # grade/genotype mix: "choi" (grades II-IV) or "li" (grade II only)
    permute_labels: bool = False
    mutant_fraction: float | None = None  # None: the mix's own prevalence; 0.5: a balanced case-control sample
    dual_echo: bool = False     # also write a short-echo DSC series (<id>_dsc-short), T1-free together

    def validate(self) -> None:
        """Reject impossible options with a message that says what is allowed."""
        if self.cases < 1:
            raise ValueError(f"--cases must be at least 1 (got {self.cases})")
        if self.size not in ("full", "small"):
            raise ValueError(f"--size must be 'full' or 'small' (got {self.size!r})")
        if self.mix not in GRADE_MIX:
            raise ValueError(f"--mix must be one of {sorted(GRADE_MIX)} (got {self.mix!r})")
        if self.effect < 0:
            raise ValueError(f"--effect must be >= 0 (got {self.effect})")
        if self.mutant_fraction is not None and not 0.0 < self.mutant_fraction < 1.0:
            raise ValueError(f"--mutant-fraction must lie between 0 and 1 (got {self.mutant_fraction})")


def case_id(index: int) -> str:
    """Stable case identifier, e.g. ``PHANTOM-007``."""
    return f"PHANTOM-{index:03d}"


def genotypes(options: PhantomOptions) -> list[bool]:
    """IDH-mutant flags: the mix's prevalence (or ``mutant_fraction``) rounded to whole patients
    (at least one of each class when there are two or more cases), in a seeded random order.
    Grades and traits are drawn per genotype either way, so only the class balance changes."""
    mix = GRADE_MIX[options.mix]
    prevalence = options.mutant_fraction if options.mutant_fraction is not None else \
        sum(mix["mutant"]) / (sum(mix["mutant"]) + sum(mix["wildtype"]))
    mutants = int(round(prevalence * options.cases))
    if options.cases >= 2:
        mutants = min(max(mutants, 1), options.cases - 1)
    flags = np.array([True] * mutants + [False] * (options.cases - mutants))
    np.random.default_rng([options.seed, 0xC0]).shuffle(flags)
    return [bool(f) for f in flags]


def clinical_table(options: PhantomOptions) -> list[tuple[PatientTraits, dict[str, object]]]:
    """Every patient's traits and clinical.csv row, without images (cheap: no volumes are built).

    Traits come from the patient's own stream (seed, index, 1), so a case does not change when
    the cohort grows; ``permute_labels`` then shuffles the idh column only.
    """
    table = []
    for index, idh_mutant in enumerate(genotypes(options)):
        rng = np.random.default_rng([options.seed, index, 1])
        traits = draw_traits(rng, idh_mutant, options.effect, options.mix)
        row = {"case_id": case_id(index), "idh": "mutant" if idh_mutant else "wildtype", "age": traits.age,
               "sex": traits.sex, "grade": traits.grade, "diagnosis_date": _diagnosis_date(rng), **traits.as_columns()}
        table.append((traits, row))
    if options.permute_labels:
        shuffled = np.random.default_rng([options.seed, 0x5EED]).permutation([row["idh"] for _, row in table])
        for (_, row), label in zip(table, shuffled):
            row["idh"] = str(label)
    return table


def simulate_patient(options: PhantomOptions, index: int, traits: PatientTraits) -> tuple[dict[str, sitk.Image], SimulatedDsc]:
    """One patient's four structural images, label map and DSC series (stream (seed, index, 2))."""
    rng = np.random.default_rng([options.seed, index, 2])
    grid = BRATS_GRID if options.size == "full" else SMALL_GRID
    anatomy = deformed_anatomy(rng, grid)
    tumour = make_tumour(rng, anatomy, traits)
    fractions = tissue_fractions(anatomy, tumour)
    relaxation = patient_relaxation(rng, traits)
    # gadolinium in the enhancing tumour, mmol/L: brackets the real TCGA case's enhancing-rim T1c
    # contrast (z 1.2 against white matter; test_contrast_matches_the_real_cases)
    post_contrast = with_gadolinium(relaxation, rng.uniform(0.06, 0.14))
    images = {}
    for modality in MODALITIES:
        values = post_contrast if modality == "t1ce" else relaxation
        images[modality] = grid.image(synthesise_modality(rng, modality, fractions, values, tumour, traits.heterogeneity))
    images["seg"] = grid.image(tumour.labels)
    dsc = simulate_dsc(rng, grid, fractions, traits, tumour.centre_index, options.dual_echo)
    return images, dsc


def _diagnosis_date(rng: np.random.Generator) -> str:
    """Uniform over 2010-2019, so a before/after-2015 temporal split has patients on both sides."""
    day = dt.date(2010, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3652)))
    return day.isoformat()


def _write_case(folder: Path, cid: str, images: dict[str, sitk.Image], dsc: SimulatedDsc) -> None:
    folder.mkdir(parents=True)
    for name, image in images.items():
        sitk.WriteImage(image, str(folder / f"{cid}_{name}.nii.gz"), useCompression=True)
    sitk.WriteImage(dsc.image(), str(folder / f"{cid}_dsc.nii.gz"), useCompression=True)
    aif_points = dsc.grid.physical_points(np.asarray(dsc.aif_voxels))
    sidecar = {
        "RepetitionTime": dsc.repetition_time_s,
        "EchoTime": dsc.echo_time_s,
        "NumberOfFrames": int(dsc.signal.shape[0]),
        "BolusArrivalTime": round(dsc.bolus_arrival_s, 3),
        "AifVoxels": [list(v) for v in dsc.aif_voxels],
        "AifPhysicalPointsLPS": [[round(float(c), 3) for c in p] for p in aif_points],
        "Note": "Simulated by IDHPredictor's digital phantom; AifVoxels are x, y, z indices of the true AIF.",
    }
    (folder / f"{cid}_dsc.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    if dsc.short_echo is not None:
        sitk.WriteImage(dsc.image(dsc.short_echo), str(folder / f"{cid}_dsc-short.nii.gz"), useCompression=True)
        short = {"RepetitionTime": dsc.repetition_time_s, "EchoTime": dsc.short_echo_time_s, "Note": sidecar["Note"]}
        (folder / f"{cid}_dsc-short.json").write_text(json.dumps(short, indent=2) + "\n", encoding="utf-8")


def _simulate_and_write(options: PhantomOptions, index: int, traits: PatientTraits, folder: Path) -> None:
    """Worker: one patient from traits to files (top-level so that a process pool can run it)."""
    images, dsc = simulate_patient(options, index, traits)
    _write_case(folder, folder.name, images, dsc)


def default_workers() -> int:
    """One process per core, at most 4 (each full-size patient peaks at ~2.2 GB while it is built)."""
    return max(1, min(os.cpu_count() or 1, 4))


def generate_cohort(out_dir: str | Path, options: PhantomOptions, progress: Callable[[int, int], None] | None = None,
                    workers: int | None = None) -> Path:
    """Write the cohort to ``out_dir`` (replaced all-or-nothing) and return its path; beside the
    cases, ``clinical.csv`` and ``phantom.json`` (the options and the code that made them).

    Patients are simulated on the Dask cluster when one is in use (``compute.use_scheduler``),
    else in ``workers`` processes (default: one per core, at most 4); each
    has its own random streams, so the bytes do not depend on the number of workers.
    ``progress(done, total)`` is called after each patient.
    """
    options.validate()
    table = clinical_table(options)
    workers = default_workers() if workers is None else workers
    with atomic_directory(out_dir) as tmp:
        jobs = [(options, index, traits, tmp / str(row["case_id"])) for index, (traits, row) in enumerate(table)]
        all_succeeded(map_cases(_simulate_and_write, jobs, [job[3].name for job in jobs], workers, progress),
                      "the phantom cohort")
        _write_clinical(tmp / "clinical.csv", table)
        record = {"generator": "IDHPredictor digital phantom", "options": asdict(options), "provenance": provenance()}
        (tmp / PHANTOM_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)


def _write_clinical(path: Path, table: list[tuple[PatientTraits, dict[str, object]]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0][1]))
        writer.writeheader()
        writer.writerows(row for _, row in table)


def write_traits_only(out_dir: str | Path, options: PhantomOptions) -> Path:
    """Write only ``out_dir/clinical.csv``: the rows ``generate_cohort`` would write for these
    options, without images (thousands of patients per second, for studies of the traits)."""
    options.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "clinical.csv") as tmp:
        _write_clinical(tmp, clinical_table(options))
    return out_dir / "clinical.csv"
