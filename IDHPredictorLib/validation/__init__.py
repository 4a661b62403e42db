"""Honest validation shared by the DLR and perfusion models: splits, metrics with bootstrap CIs, reports."""
