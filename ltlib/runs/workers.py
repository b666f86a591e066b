"""Worker processes: run named ltlib functions side by side, one intra-op thread each.

A :class:`Task` names a module-level function (``"ltlib.runs.jobs:train_job"``) and its arguments as text; a
worker is a fresh ``python -m ltlib.runs.workers TARGET ARGS...`` process (not ``multiprocessing``, which would
re-execute an exported notebook script in every worker). The caller names the function, so this layer knows nothing
of what the jobs do: training (:mod:`ltlib.runs.jobs`) and sharpness analyses (:mod:`ltlib.analysis.sharpness.report`)
both use it.

With ``long_lived=True`` (runs sharing a GPU) each worker is started once, as ``python -m ltlib.runs.workers --serve``,
and takes task after task: one JSON line per task on its stdin, one JSON reply per task on its stdout, the task's own
output in the task's log. A quick run on a GPU takes seconds, about what a fresh process spends importing torch and
opening the CUDA context, so a worker pays that once.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import traceback
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
              threads: int | None = None, long_lived: bool = False) -> None:
    """Run ``tasks`` in ``jobs`` worker processes at a time, longest first, each with ``threads`` CPU threads (default:
    a CPU run's, ``run_threads``); the first failure stops the others (an interrupted run resumes from its last
    finished epoch next time) and raises :class:`JobError`. ``long_lived`` keeps ``jobs`` workers for all the tasks
    instead of a fresh process per task."""
    queue = sorted(tasks, key=lambda t: -t.cost)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or run_threads(torch.device("cpu"))), "LTLIB_JOBS": "1"}
    if long_lived:
        _run_pool(queue, jobs, env, desc, progress)
        return
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
                        raise JobError(f"{task.name} failed in its worker (exit {proc.returncode}):\n{_tail(log)}")
                    done.append(f"  {task.name}: {duration(time.perf_counter() - started)}")
                    bar.update(1, ", ".join(t.name for t, _, _ in running.values()), force=True)
            bar.close("\n".join([f"{bar.summary()}, {side} side by side:", *done]))
        finally:
            for proc in running:
                proc.terminate()
            for proc in running:
                proc.wait()


def _tail(log: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a task's log, for the error that names it."""
    return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


def _run_pool(queue: list[Task], jobs: int, env: dict, desc: str, progress: bool) -> None:
    """:func:`run_tasks` with ``min(jobs, len(queue))`` long-lived workers, each given its next task when it replies."""
    busy: dict[subprocess.Popen, tuple[Task, Path, float]] = {}
    done: list[str] = []
    side = min(jobs, len(queue))
    with tempfile.TemporaryDirectory(prefix="ltlib-pool-") as logs, \
            Progress(len(queue), desc, "runs" if desc == "training" else "jobs", enabled=progress) as bar:
        workers, finished = [], False

        def give(worker: subprocess.Popen) -> None:
            task = queue.pop(0)
            log = Path(logs) / f"task-{len(queue)}.log"
            worker.stdin.write(json.dumps({"target": task.target, "args": task.args, "log": str(log)}) + "\n")
            worker.stdin.flush()
            busy[worker] = (task, log, time.perf_counter())

        try:
            for i in range(side):
                with open(Path(logs) / f"worker-{i}.log", "wb") as err:
                    workers.append(subprocess.Popen([sys.executable, "-m", "ltlib.runs.workers", "--serve"], env=env,
                                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                                    text=True, bufsize=1))
                give(workers[-1])
            while busy:
                bar.update(0, ", ".join(t.name for t, _, _ in busy.values()))
                ready = select.select([w.stdout for w in busy], [], [], 0.2)[0]
                for worker in [w for w in busy if w.stdout in ready]:
                    task, log, started = busy.pop(worker)
                    reply = worker.stdout.readline()
                    if not reply or not json.loads(reply).get("ok"):
                        tail = (_tail(log) if log.exists() else "") or "(the worker stopped before replying)"
                        raise JobError(f"{task.name} failed in its worker:\n{tail}")
                    done.append(f"  {task.name}: {duration(time.perf_counter() - started)}")
                    bar.update(1, ", ".join(t.name for t, _, _ in busy.values()), force=True)
                    if queue:
                        give(worker)
                    else:
                        worker.stdin.close()            # no more work: the worker exits
            bar.close("\n".join([f"{bar.summary()}, {side} side by side in long-lived workers:", *done]))
            finished = True
        finally:
            for worker in workers:
                if not finished and worker.poll() is None:
                    worker.terminate()                  # a failure stops the others
                with contextlib.suppress(OSError):
                    worker.stdin.close()
                worker.wait()


def serve() -> None:
    """A long-lived worker: run each task line from stdin, its output in its log; reply ``{"ok": ...}`` on stdout.

    The replies go through a copy of the original stdout; file descriptor 1 is pointed at stderr, so that no output
    of a task (C code's included) can mix with them."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    for line in sys.stdin:
        task = json.loads(line)
        ok = True
        with open(task["log"], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                call(task["target"], task["args"])
            except (Exception, SystemExit):
                traceback.print_exc()
                ok = False
        replies.write(json.dumps({"ok": ok}) + "\n")


def ping(path: str) -> None:
    """Write this process's id to ``path``: which worker ran a task (the tests of the long-lived pool)."""
    Path(path).write_text(str(os.getpid()))


def call(target: str, args: Sequence[str]) -> None:
    """Call ``target`` (``"module:function"`` in ltlib) with ``args``: what a worker process does."""
    module, _, function = target.partition(":")
    if not module.startswith("ltlib.") or not function:
        raise SystemExit(f"a worker's target is 'ltlib.<module>:<function>', got {target!r}")
    getattr(importlib.import_module(module), function)(*args)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m ltlib.runs.workers ltlib.<module>:<function> [ARGS...] | --serve")
    if sys.argv[1] == "--serve":
        serve()
    else:
        call(sys.argv[1], sys.argv[2:])
