"""The tumour sub-regions' names, colours and SNOMED CT codes, one table for every output that
names them: the Slicer segments, the web app and the DICOM Segmentation and report."""

from __future__ import annotations

# BraTS label value -> (segment name, colour, SNOMED CT type code and meaning); codes as in 3D Slicer's
# "General Anatomy" terminology, so a DICOM SEG read into Slicer shows the same segments.
TUMOUR_SEGMENTS: dict[int, tuple[str, tuple[float, float, float], str, str]] = {
    1: ("Necrotic and non-enhancing core", (0.90, 0.30, 0.25), "6574001", "Necrosis"),
    2: ("Oedema", (0.35, 0.75, 0.30), "79654002", "Edema"),
    4: ("Enhancing tumour", (0.95, 0.85, 0.20), "108369006", "Neoplasm"),
}
SEGMENT_CATEGORY = ("49755003", "SCT", "Morphologically Altered Structure")
