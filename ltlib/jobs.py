"""Train many runs side by side: one worker process per run, one intra-op thread each.

A quick-profile model is too small for two threads to pay: on 2 cores a two-thread run takes 0.72x the
time of a one-thread run, while two one-thread runs side by side finish 1.42x sooner than two two-thread
runs one after the other (README, "Speed"; ``python -m ltlib.bench_jobs``). Every training run uses
:func:`~ltlib.env.run_threads` threads wherever it trains, so its numbers are the same alone, in a worker or
in a notebook.

    runs = run_grid({"SGD": sgd_config, "SAM": sam_config}, seeds=[0, 1, 2])   # label -> [Run per seed]

Workers are fresh ``python -m ltlib.jobs`` processes (not ``multiprocessing``, which would re-execute an
exported notebook script in every worker). ``LTLIB_JOBS`` sets how many run at once; on a GPU it is 1.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from .env import available_cpus, env_count, resolve_device, run_threads
from .errors import ConfigError
from .experiment import Run, config_from_dict, default_exp_dir, is_finished, run, run_dir
from .progress import Progress, duration
from .stage2 import Stage2Config

# the cost of one epoch relative to a plain SGD epoch (README, "Speed": SAM 2.0x, ImbSAM 2.6x, CC-SAM 1x)
_STEP_COST = {"sam": 2.0, "sam_adaptive": 2.0, "asam": 2.0, "imbsam": 2.6}
_STAGE2_COST = 0.5


class JobError(RuntimeError):
    """A worker process failed; the message ends with the tail of its output."""


@dataclass
class Task:
    """One job for a worker: its label (for the progress bar and errors), the worker's arguments and a cost
    used to start the longest jobs first."""

    name: str
    args: list[str]
    cost: float = 1.0


def default_jobs(device: str | torch.device = "auto") -> int:
    """How many runs train at once: ``LTLIB_JOBS``, else one per ``run_threads`` cores on CPU, 1 on a GPU."""
    threads = run_threads(resolve_device(device))
    default = 1 if threads is None else max(1, available_cpus() // threads)
    return env_count("LTLIB_JOBS", default, "runs")


def run_grid(configs: Mapping[str, object], seeds: Sequence[int] | Mapping[str, Sequence[int]], *,
             jobs: int | None = None, exp_dir: str | Path | None = None, device: str | torch.device = "auto",
             data_dir: str | None = None, progress: bool = True) -> dict[str, list[Run]]:
    """Every config on every seed (``seeds`` may map a label to its own seeds), as ``label -> [Run]``.

    What is not cached trains first, ``jobs`` runs at a time (default :func:`default_jobs`); stage-1 runs
    before the stage-2 runs built on them. Then every run is loaded, as :func:`~ltlib.experiment.run_seeds`
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
    two are missing (else nothing: :func:`~ltlib.experiment.run` trains them in this process). With
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
        if not is_finished(run_dir(config, root)):
            bucket.setdefault(run_dir(config, root), config)

    for config in configs:
        if isinstance(config, Stage2Config):
            add_missing(stage1, config.stage1)
            add_missing(stage2, config)
        else:
            add_missing(stage1, config)
    if n_jobs == 1 or dev.type != "cpu" or len(stage1) + len(stage2) < 2:
        return 0
    if jobs is None and all(c.profile == "smoke" for c in (*stage1.values(), *stage2.values())):
        return 0                            # a smoke run takes about a second, less than a worker's start-up
    trained = 0
    for phase in (stage1, stage2):
        if len(phase) == 1:                 # one run: train it here, with its own progress bar
            run(next(iter(phase.values())), exp_dir=root, device=dev, data_dir=data_dir, progress=progress)
        elif phase:
            run_tasks([train_task(c, root, data_dir) for c in phase.values()], n_jobs, desc="training",
                      progress=progress)
        trained += len(phase)
    return trained


def train_task(config, exp_dir: Path, data_dir: str | None = None) -> Task:
    """The worker task that trains ``config`` into ``exp_dir``."""
    return Task(config.run_name, ["train", json.dumps(config.to_dict()), str(exp_dir), data_dir or ""], _cost(config))


def _cost(config) -> float:
    if isinstance(config, Stage2Config):
        return _STAGE2_COST * config.epochs
    return _STEP_COST.get(config.step, 1.0) * config.epochs


def run_tasks(tasks: Sequence[Task], jobs: int, *, desc: str = "jobs", progress: bool = True) -> None:
    """Run ``tasks`` in ``jobs`` worker processes at a time, longest first; the first failure stops the
    others (an interrupted run resumes from its last finished epoch next time) and raises :class:`JobError`."""
    queue = sorted(tasks, key=lambda t: -t.cost)
    env = {**os.environ, "OMP_NUM_THREADS": str(run_threads(torch.device("cpu"))), "LTLIB_JOBS": "1"}
    running: dict[subprocess.Popen, tuple[Task, Path, float]] = {}
    done: list[str] = []
    side = min(jobs, len(queue))
    with tempfile.TemporaryDirectory(prefix="ltlib-jobs-") as logs, \
            Progress(len(queue), desc, "runs" if desc == "training" else "jobs", enabled=progress) as bar:
        try:
            while queue or running:
                while queue and len(running) < jobs:
                    task = queue.pop(0)
                    log = Path(logs) / f"{len(queue)}.log"
                    with open(log, "wb") as out:
                        proc = subprocess.Popen([sys.executable, "-m", "ltlib.jobs", *task.args], env=env,
                                                stdout=out, stderr=subprocess.STDOUT)
                    running[proc] = (task, log, time.perf_counter())
                bar.update(0, ", ".join(t.name for t, _, _ in running.values()))
                time.sleep(0.2)
                for proc in [p for p in running if p.poll() is not None]:
                    task, log, started = running.pop(proc)
                    if proc.returncode != 0:
                        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
                        raise JobError(f"{task.name} failed in its worker (exit {proc.returncode}):\n{tail}")
                    done.append(f"  {task.name}: {duration(time.perf_counter() - started)}")
                    bar.update(1, ", ".join(t.name for t, _, _ in running.values()), force=True)
            bar.close("\n".join([f"{bar.summary()}, {side} side by side:", *done]))
        finally:
            for proc in running:
                proc.terminate()
            for proc in running:
                proc.wait()


def _worker(argv: list[str]) -> int:
    """``train CONFIG_JSON EXP_DIR DATA_DIR`` or ``analyse RUN_DIR SETTINGS_JSON SEED ASCENT_ETA``."""
    kind, *rest = argv
    if kind == "train":
        config_json, exp_dir, data_dir = rest
        run(config_from_dict(json.loads(config_json)), exp_dir=exp_dir, device="cpu", data_dir=data_dir or None,
            progress=False)
    elif kind == "analyse":
        from .sharpness.report import analyse_path
        analyse_path(*rest)
    else:
        raise SystemExit(f"unknown job kind {kind!r}: 'train' or 'analyse'")
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
