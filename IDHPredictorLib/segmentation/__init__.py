"""Tumour segmentation: the paper's 2-D patch CNN, its training, dense inference and evaluation."""
