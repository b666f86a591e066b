"""Train many runs side by side: one worker process per run, one intra-op thread each.

A quick-profile model is too small for two threads to pay: on 2 cores a two-thread run takes 0.72x the
time of a one-thread run, while two one-thread runs side by side finish 1.42x sooner than two two-thread
runs one after the other (README, "Speed"; ``python -m ltlib.tools.bench_jobs``). Every training run uses
:func:`~ltlib.core.env.run_threads` threads wherever it trains, so its numbers are the same alone, in a worker or
in a notebook.

    runs = run_grid({"SGD": sgd_config, "SAM": sam_config}, seeds=[0, 1, 2])   # label -> [Run per seed]

Workers are processes (:mod:`ltlib.runs.workers`). ``LTLIB_JOBS`` sets how many run at once. On the CPU each run gets
a fresh process. On a GPU it is 1 by default (the runs train one after the other in this process); ``LTLIB_JOBS=4``
opts in to four long-lived workers sharing the GPU, each with a quarter of the CPU cores, each taking run after run
(torch's import and the CUDA context paid once per worker), which pays where short runs leave the GPU waiting on the
host.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..core.env import available_cpus, resolve_device
from ..core.errors import ConfigError
from ..methods.step import step_passes
from .experiment import Run, config_from_dict, default_exp_dir, is_finished, run, run_dir
from .stage2 import Stage2Config
from .workers import JobError, Task, default_jobs, run_tasks


__all__ = ["JobError", "Task", "default_jobs", "run_grid", "run_tasks", "train_job", "train_missing", "train_task"]

# a stage-2 epoch against a plain stage-1 epoch (only the classifier trains); a stage-1 epoch costs its step's passes
_STAGE2_COST = 0.5


def run_grid(configs: Mapping[str, object], seeds: Sequence[int] | Mapping[str, Sequence[int]], *,
             jobs: int | None = None, exp_dir: str | Path | None = None, device: str | torch.device = "auto",
             data_dir: str | None = None, progress: bool = True) -> dict[str, list[Run]]:
    """Every config on every seed (``seeds`` may map a label to its own seeds), as ``label -> [Run]``.

    What is not cached trains first, ``jobs`` runs at a time (default :func:`default_jobs`); stage-1 runs
    before the stage-2 runs built on them. Then every run is loaded, as :func:`~ltlib.runs.experiment.run_seeds`
    would. The numbers do not depend on ``jobs``.
    """
    unknown = set(seeds) - set(configs) if isinstance(seeds, Mapping) else set()
    if unknown:
        raise ConfigError(f"seeds names labels that are not in configs: {sorted(unknown)}")
    wanted = {label: [config.with_seed(int(s)) for s in (seeds.get(label, []) if isinstance(seeds, Mapping)
                                                          else seeds)]
              for label, config in configs.items()}
    train_missing([c for cs in wanted.values() for c in cs], jobs=jobs, exp_dir=exp_dir, device=device,
                  data_dir=data_dir, progress=progress)
    return {label: [run(c, exp_dir=exp_dir, device=device, data_dir=data_dir, progress=progress) for c in cs]
            for label, cs in wanted.items()}


def train_missing(configs: Sequence[object], *, jobs: int | None = None, exp_dir: str | Path | None = None,
                  device: str | torch.device = "auto", data_dir: str | None = None, progress: bool = True) -> int:
    """Train the configs that have no finished run, side by side in workers when ``jobs`` > 1 and at least
    two are missing (else nothing: :func:`~ltlib.runs.experiment.run` trains them in this process). With
    ``jobs=None``, smoke-profile runs stay in this process too: each is shorter than a worker's start-up.
    Returns how many runs it trained (0 when it leaves them to ``run``)."""
    dev = resolve_device(device)
    n_jobs = default_jobs(dev) if jobs is None else int(jobs)
    if n_jobs < 1:
        raise ConfigError(f"jobs={jobs}: give a whole number of runs >= 1")
    root = Path(exp_dir or default_exp_dir()).resolve()
    stage1: dict[Path, object] = {}         # run folder -> config, for the runs not finished
    stage2: dict[Path, object] = {}

    def add_missing(bucket: dict, config) -> None:
        path = run_dir(config, root, dev)
        if not is_finished(path):
            bucket.setdefault(path, config)

    for config in configs:
        if isinstance(config, Stage2Config):
            add_missing(stage1, config.stage1)
            add_missing(stage2, config)
        else:
            add_missing(stage1, config)
    if n_jobs == 1 or len(stage1) + len(stage2) < 2:      # on a GPU n_jobs is 1 unless LTLIB_JOBS (or jobs) says more
        return 0
    if jobs is None and all(c.profile == "smoke" for c in (*stage1.values(), *stage2.values())):
        return 0                            # a smoke run takes about a second, less than a worker's start-up
    trained = 0
    for phase in (stage1, stage2):
        if len(phase) == 1:                 # one run: train it here, with its own progress bar
            run(next(iter(phase.values())), exp_dir=root, device=dev, data_dir=data_dir, progress=progress)
        elif phase:
            # CPU workers take run_threads threads each; workers sharing a GPU split the cores between them
            threads = None if dev.type == "cpu" else max(1, available_cpus() // n_jobs)
            run_tasks([train_task(c, root, data_dir, dev) for c in phase.values()], n_jobs, desc="training",
                      progress=progress, threads=threads, long_lived=dev.type != "cpu")
        trained += len(phase)
    return trained


def train_task(config, exp_dir: Path, data_dir: str | None = None, device: str | torch.device = "cpu") -> Task:
    """The worker task that trains ``config`` into ``exp_dir`` on ``device``."""
    return Task(config.run_name, "ltlib.runs.jobs:train_job",
                [json.dumps(config.to_dict()), str(exp_dir), data_dir or "", str(device)], _cost(config))


def _cost(config) -> float:
    if isinstance(config, Stage2Config):
        return _STAGE2_COST * config.epochs
    return step_passes(config.step) * config.epochs


def train_job(config_json: str, exp_dir: str, data_dir: str, device: str = "cpu") -> None:
    """What a worker of :func:`train_task` runs: train (or load) the config given as JSON into ``exp_dir``."""
    run(config_from_dict(json.loads(config_json)), exp_dir=exp_dir, device=device, data_dir=data_dir or None,
        progress=False)
