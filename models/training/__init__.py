"""Training and fitting (torch): configs, the network, pretraining, export, calibration fitting."""
