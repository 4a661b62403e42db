"""Run the IDHPredictor workflow on every case of a cohort inside 3D Slicer, without its window.

    Slicer --no-main-window --python-script Examples/slicer_batch.py COHORT_DIR OUTPUT_DIR

Each case is loaded into the scene, segmented with the shipped CNN, scored by the DLR and (with a
DSC series) the perfusion model, and written to OUTPUT_DIR/<case id>/ (result.json, label map,
PNGs); OUTPUT_DIR/summary.json lists every case, with the error for any case that could not be
read. Exits with status 1 when a case failed.
"""

import sys

import slicer

from IDHPredictor import IDHPredictorLogic

if len(sys.argv) != 3:
    print(__doc__)
    slicer.util.exit(2)
summary = IDHPredictorLogic().processCohort(sys.argv[1], sys.argv[2])
for entry in summary:
    if "error" in entry:
        print(f"{entry['case_id']}: {entry['error']}")
    else:
        print(f"{entry['case_id']}: DLR IDH-mutant probability {entry['dlr']['idh_mutant_probability']:.2f}")
slicer.util.exit(1 if any("error" in entry for entry in summary) else 0)
