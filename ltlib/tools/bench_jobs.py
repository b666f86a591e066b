"""Side-by-side benchmark of how to spend a CPU's cores on many runs: ``python -m ltlib.tools.bench_jobs``.

Three ways to train the same ``runs`` quick-profile runs (one per core by default, different seeds), each in
fresh worker processes (:func:`ltlib.runs.workers.run_tasks`) so that every way pays the same start-up:

* one run at a time with one thread per core (what ltlib did before :mod:`ltlib.runs.jobs`);
* one run at a time with one thread;
* side by side, one run per core with one thread each (what ``run_grid`` does).

The ways run interleaved, ``--repeats`` times, with an empty ``exp/`` each time; the report gives the wall time
of each way, median [min..max], and each way's speed relative to the first, paired within a repeat. It goes to
``exp/bench/jobs-<time>.json``. Timings are never asserted; ``--tiny`` is a seconds-long mode for the tests.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ..core.env import available_cpus, cpu_model
from ..runs.config import make_config
from ..runs.jobs import run_tasks, train_task
from .bench import write_report


def _train_all(configs, jobs: int, threads: int, exp_dir: Path) -> float:
    """Seconds to train ``configs`` in workers, ``jobs`` at a time with ``threads`` threads each."""
    before = os.environ.get("LTLIB_RUN_THREADS")
    os.environ["LTLIB_RUN_THREADS"] = str(threads)
    try:
        start = time.perf_counter()
        run_tasks([train_task(c, exp_dir) for c in configs], jobs, progress=False)
        return time.perf_counter() - start
    finally:
        if before is None:
            del os.environ["LTLIB_RUN_THREADS"]
        else:
            os.environ["LTLIB_RUN_THREADS"] = before


def run_benchmark(*, runs: int | None = None, epochs: int = 5, repeats: int = 2, tiny: bool = False,
                  out_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Time the three ways (module docstring) and write the report; returns it with its ``path``."""
    cores = available_cpus()
    runs = runs or max(2, cores)
    profile, epochs = ("smoke", 1) if tiny else ("quick", epochs)
    scale = dict(test_per_class=20) if tiny else {}
    configs = [make_config(profile, "ce", epochs=epochs, eval_every=epochs, seed=s, name="bench-jobs", **scale)
               for s in range(runs)]
    ways = {f"one at a time, {cores} threads": (1, cores), "one at a time, 1 thread": (1, 1),
            f"side by side, {min(cores, runs)} x 1 thread": (cores, 1)}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for repeat in range(repeats):
        for name, (jobs, threads) in ways.items():
            with tempfile.TemporaryDirectory(prefix="ltlib-bench-jobs-") as exp:
                seconds[name].append(_train_all(configs, jobs, threads, Path(exp)))
            if progress:
                print(f"repeat {repeat + 1}/{repeats}: {name}: {seconds[name][-1]:.1f} s", flush=True)
    first = next(iter(ways))
    rows = {name: {"median_s": statistics.median(s), "min_s": min(s), "max_s": max(s),
                   "speed_vs_first": [a / b for a, b in zip(seconds[first], s)]} for name, s in seconds.items()}
    result = {"what": f"{runs} runs of the {profile} profile's ce recipe, {epochs} epochs each, seeds 0-{runs - 1}",
              "machine": {"cpu": cpu_model(), "cores": cores}, "repeats": repeats, "seconds": seconds, "results": rows}
    if progress:
        for name, row in rows.items():
            speed = row["speed_vs_first"]
            print(f"{name:>32}: {row['median_s']:6.1f} s [{row['min_s']:.1f}..{row['max_s']:.1f}], "
                  f"{statistics.median(speed):.2f}x [{min(speed):.2f}..{max(speed):.2f}] the speed of the first")
    return write_report(result, "jobs", tiny=tiny, out_dir=out_dir, progress=progress)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ltlib.tools.bench_jobs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="runs per way (default: one per core, at least 2)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke mode (tests)")
    parser.add_argument("--out", default=None, help="output folder (default exp/bench)")
    args = parser.parse_args(argv)
    return run_benchmark(runs=args.runs, epochs=args.epochs, repeats=args.repeats, tiny=args.tiny, out_dir=args.out)


if __name__ == "__main__":
    main()
