"""IDHPredictor library: glioma segmentation, DLR and perfusion IDH prediction.

Pipeline stages live in their own modules (``io``, ``preprocessing``, ``phantom``,
...); nothing here imports Slicer or Qt, so the library runs in a terminal, in
Slicer's Python, and in tests.
"""

__version__ = "0.1.0"
