"""Small helpers the notebooks call at the top: the profile switch and a printout of the recipe."""
from __future__ import annotations

import os
import time

import torch

from ..core.env import available_cpus, configure_threads, cpu_model, resolve_device, run_threads
from ..core.progress import duration
from ..data.mixing import MIXINGS
from ..methods.step import STEPS
from ..runs.config import RunConfig
from ..runs.jobs import default_jobs


_SHOWN = ("dataset", "imbalance_factor", "n_max", "subset", "val_split", "model", "width", "loss", "sampler", "mixing",
          "step", "epochs", "batch_size", "lr", "schedule", "warmup_epochs", "momentum", "weight_decay", "precision",
          "crop_padding", "flip", "group_scheme", "tta")


def resolve_profile(profile: str) -> str:
    """The notebook's ``profile`` parameter, unless ``LTLIB_PROFILE`` is set.

    The exported scripts have no papermill to inject parameters, so
    ``LTLIB_PROFILE=smoke python scripts/01_first_stage_training.py`` runs one at another scale.
    """
    return os.environ.get("LTLIB_PROFILE") or profile


_STARTED: list[float] = []


def setup(device: str = "auto") -> torch.device:
    """Pick the device and thread count, say what was chosen, and start the clock :func:`finish` reads."""
    _STARTED[:] = [time.perf_counter()]
    dev = resolve_device(device)
    threads = configure_threads()
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{cpu_model()} ({available_cpus()} cores)"
    n = run_threads(dev)
    runs = "" if n is None else f"; each run {n} thread{'s' * (n != 1)}, up to {default_jobs(dev)} side by side"
    print(f"device: {dev} — {where}; torch {torch.__version__}, {threads} CPU threads{runs}")
    return dev


def finish() -> None:
    """Say how long the notebook took since :func:`setup`, and on what."""
    if not _STARTED:
        return
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{cpu_model()} ({available_cpus()} cores)"
    print(f"this notebook ran in {duration(time.perf_counter() - _STARTED[0])} on {where} "
          "(training what was missing and loading the rest from exp/)")


def describe(config: RunConfig) -> str:
    """The settings that define a run, one line each, as the notebooks print them."""
    # each mixing rule and step strategy names the fields it shows in its registry entry
    shown = (*_SHOWN, *MIXINGS.entry(config.mixing).info.get("shown", ()),
             *STEPS.entry(config.step).info.get("shown", ()))
    lines = [f"{name:>18}: {getattr(config, name)}" for name in shown]
    return "\n".join([f"{config.profile} profile, {config.recipe} recipe", *lines])
