"""DSC perfusion (Choi et al. 2021): kinetics, AIF, rCBV, signal-time curves, attention-LSTM."""
