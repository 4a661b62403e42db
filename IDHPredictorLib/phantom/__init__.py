"""Digital phantom cohort: simulated glioma patients with structural MRI, DSC and clinical data."""
