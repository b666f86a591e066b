"""Worker processes: run named ltlib functions side by side, one intra-op thread each.

A :class:`Task` names a module-level function (``"ltlib.runs.jobs:train_job"``) and its arguments as text; a
worker is a fresh ``python -m ltlib.runs.workers TARGET ARGS...`` process (not ``multiprocessing``, which would
re-execute an exported notebook script in every worker). The caller names the function, so this layer knows nothing of what the jobs
do: training (:mod:`ltlib.runs.jobs`) and sharpness analyses (:mod:`ltlib.analysis.sharpness.report`) both use it.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..core.env import available_cpus, env_count, resolve_device, run_threads
from ..core.progress import Progress, duration


class JobError(RuntimeError):
    """A worker process failed; the message ends with the tail of its output."""


@dataclass
class Task:
    """One job for a worker: its label (for the progress bar and errors), the function it calls
    (``"module:function"``, a module of ltlib), that function's arguments as text, and a cost used to start the
    longest jobs first."""

    name: str
    target: str
    args: list[str]
    cost: float = 1.0


def default_jobs(device: str | torch.device = "auto") -> int:
    """How many runs train at once: ``LTLIB_JOBS``, else one per ``run_threads`` cores on CPU, 1 on a GPU."""
    threads = run_threads(resolve_device(device))
    default = 1 if threads is None else max(1, available_cpus() // threads)
    return env_count("LTLIB_JOBS", default, "runs")


def run_tasks(tasks: Sequence[Task], jobs: int, *, desc: str = "jobs", progress: bool = True,
              threads: int | None = None) -> None:
    """Run ``tasks`` in ``jobs`` worker processes at a time, longest first, each with ``threads`` CPU threads (default:
    a CPU run's, ``run_threads``); the first failure stops the others (an interrupted run resumes from its last
    finished epoch next time) and raises :class:`JobError`."""
    queue = sorted(tasks, key=lambda t: -t.cost)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or run_threads(torch.device("cpu"))), "LTLIB_JOBS": "1"}
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
                        proc = subprocess.Popen([sys.executable, "-m", "ltlib.runs.workers", task.target, *task.args],
                                                env=env, stdout=out, stderr=subprocess.STDOUT)
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


def call(target: str, args: Sequence[str]) -> None:
    """Call ``target`` (``"module:function"`` in ltlib) with ``args``: what a worker process does."""
    module, _, function = target.partition(":")
    if not module.startswith("ltlib.") or not function:
        raise SystemExit(f"a worker's target is 'ltlib.<module>:<function>', got {target!r}")
    getattr(importlib.import_module(module), function)(*args)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m ltlib.runs.workers ltlib.<module>:<function> [ARGS...]")
    call(sys.argv[1], sys.argv[2:])
