"""Analysis of trained models: sharpness (random perturbations, Hessian, landscapes), calibration, and post-hoc
repairs of a classifier (tau-normalisation). Takes models and data; the caller loads the runs."""
