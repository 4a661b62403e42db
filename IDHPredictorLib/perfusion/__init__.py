"""DSC perfusion (Choi et al. 2019): kinetics, AIF, rCBV, signal-time curves, attention-LSTM."""
