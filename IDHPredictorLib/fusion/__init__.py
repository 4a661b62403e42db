"""Fusion of the DLR, perfusion and clinical components into one calibrated answer with a prediction set."""
