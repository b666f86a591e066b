"""ltlib: deep long-tailed image recognition, a notebook tutorial series backed by a small, fast library.

Its packages are its layers, bottom up; each imports only from those below it (tests/test_layers.py):
``core`` (errors, registries, files, environment) -> ``data``, ``models``, ``methods`` (losses, step strategies,
schedules) -> ``runs`` (the loop, evaluation, configs, stage 2, the run cache, jobs) -> ``analysis`` (sharpness,
calibration, post-hoc normalisation) and ``report`` (tables, findings, figures, the notebooks' helpers) -> ``tools``
(command lines and benchmarks).
"""
__version__ = "0.1.0"
