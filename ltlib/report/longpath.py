"""A notebook's results as data, and the long path's results as committed files with their provenance.

Every notebook collects what it measured in a :class:`NotebookResults` (one row per label, seed and metric)
and saves it to ``exp/tables/results-<notebook>-<dataset>-<profile>.csv``. ``make tutorial FULL=1`` (the long
path: every notebook with its own defaults, seeds 0-2, sweeps and ablations) then *publishes* those files to
``exp/summaries/longpath/``, the copies that are committed. A notebook on the short path loads its long-path
file (:func:`load`) and shows it beside the reader's own numbers, labelled by :func:`provenance`: the command,
the seeds, the commit that trained the runs, the threads per run, the hardware and the dates.

Each row carries the provenance of what it was computed from: a training run's folder name and its own
``environment.json`` (commit, threads, hardware, and the date its ``metrics.json`` was written), or, for a number
the notebook computed itself (a τ sweep, a sharpness analysis), this process's.
"""
from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..core import io
from ..core.env import SOURCE_ROOT, cpu_model, git_commit, hardware_label
from ..runs.experiment import Run, default_exp_dir
from .results import METRICS, Result


COLUMNS = ("notebook", "table", "label", "seed", "metric", "value", "run", "commit", "threads", "hardware", "date")
COMMAND = "make tutorial FULL=1"


def longpath_dir() -> Path:
    """Where the committed long-path files live: ``exp/summaries/longpath/`` of the source checkout (of the
    working directory when ltlib is not installed from one). ``LTLIB_EXP_DIR`` does not move them."""
    repo = SOURCE_ROOT
    root = repo / "exp" if (repo / "pyproject.toml").is_file() else Path.cwd() / "exp"
    return root / "summaries" / "longpath"


def file_name(notebook: str, dataset: str, profile: str) -> str:
    return f"results-{notebook}-{dataset}-{profile}.csv"


def _here() -> dict:
    """The provenance of a number computed in this process, now."""
    return {"run": "", "commit": git_commit() or "", "threads": torch.get_num_threads(),
            "hardware": f"{cpu_model()}" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
            "date": datetime.now().strftime("%Y-%m-%d")}


def _run_provenance(run: Run) -> dict:
    env = run.environment
    date = env.get("date") or datetime.fromtimestamp((run.path / "metrics.json").stat().st_mtime).strftime("%Y-%m-%d")
    return {"run": run.path.name, "commit": env.get("git_commit") or "", "threads": env.get("torch_threads", ""),
            "hardware": hardware_label(env).split(",")[0] if env else "", "date": date}


class NotebookResults:
    """What one notebook measured, as tidy rows; :meth:`save` writes them to ``exp/tables/``."""

    def __init__(self, notebook: str, dataset: str, profile: str) -> None:
        self.notebook, self.dataset, self.profile = notebook, dataset, profile
        self.rows: list[dict] = []

    def add_runs(self, table: str, runs_by_label: Mapping[str, Sequence[Result]],
                 metrics: Sequence[str] = METRICS, extra: Mapping[str, Callable[[Run], float]] | None = None) -> None:
        """Each run's last-epoch test accuracies (and any other ``metrics`` a result dict carries, its training
        time, or an ``extra`` function of the run computes)."""
        here = None
        for label, results in runs_by_label.items():
            for r in results:
                if isinstance(r, Run):
                    values, seed, origin = r.result(), r.config.seed, _run_provenance(r)
                    values = {**values, "train_time_s": r.metrics.get("train_time_s"),
                              **{name: fn(r) for name, fn in (extra or {}).items()}}
                else:
                    here = here or _here()
                    values, seed, origin = r, r["seed"], here
                for m in metrics:
                    if values.get(m) is not None:
                        self.rows.append({"notebook": self.notebook, "table": table, "label": str(label),
                                          "seed": int(seed), "metric": m, "value": float(values[m]), **origin})

    def add_values(self, table: str, values: pd.DataFrame) -> None:
        """Rows of numbers computed in this notebook: ``values`` has columns label, seed, metric, value."""
        missing = {"label", "seed", "metric", "value"} - set(values.columns)
        if missing:
            raise ValueError(f"add_values needs the columns label, seed, metric, value; missing {sorted(missing)}")
        here = _here()
        for row in values.itertuples(index=False):
            self.rows.append({"notebook": self.notebook, "table": table, "label": str(row.label),
                              "seed": int(row.seed), "metric": str(row.metric), "value": float(row.value), **here})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)

    def save(self, folder: str | Path | None = None) -> Path:
        """Write the rows to ``exp/tables/results-<notebook>-<dataset>-<profile>.csv`` (atomically)."""
        path = Path(folder or default_exp_dir() / "tables") / file_name(self.notebook, self.dataset, self.profile)
        io.write_text(path, self.frame().to_csv(index=False))
        return path


def publish(notebooks: Sequence[str], dataset: str, profile: str, source: str | Path | None = None,
            target: str | Path | None = None) -> list[Path]:
    """Copy the results files the long path just wrote (``exp/tables/``) to the committed folder."""
    source = Path(source or default_exp_dir() / "tables")
    target = Path(target or longpath_dir())
    copied = []
    for nb in notebooks:
        path = source / file_name(nb, dataset, profile)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: notebook {nb} did not save its results")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / path.name)
        copied.append(target / path.name)
    return copied


def load(notebook: str, dataset: str, profile: str, folder: str | Path | None = None) -> pd.DataFrame | None:
    """The committed long-path results of a notebook for this data set and profile, or None when there are
    none. The smoke profile (the test suite) reads the quick profile's, so that the tests render them."""
    folder = Path(folder or longpath_dir())
    for p in (profile, "quick") if profile == "smoke" else (profile,):
        path = folder / file_name(notebook, dataset, p)
        if path.is_file():
            table = pd.read_csv(path, dtype={"commit": str, "label": str, "run": str})
            table["profile"] = p
            return table
    return None


def results(table: pd.DataFrame, part: str, metrics: Sequence[str] = METRICS) -> dict[str, list[dict]]:
    """``label -> [result dict per seed]`` for one table of a results file, ready for
    :func:`ltlib.report.results.summarize` and :func:`ltlib.report.findings.compare`."""
    rows = table[(table["table"] == part) & table["metric"].isin(list(metrics))]
    if rows.empty:
        raise KeyError(f"the results have no table {part!r} with {list(metrics)}; tables: {sorted(set(table['table']))}")
    out: dict[str, list[dict]] = {}
    for label, by_label in rows.groupby("label", sort=False):
        wide = by_label.pivot_table(index="seed", columns="metric", values="value", aggfunc="first")
        out[label] = [{"name": label, "seed": int(seed), **{m: float(v) for m, v in values.items() if np.isfinite(v)}}
                      for seed, values in wide.iterrows()]
    return out


def values(table: pd.DataFrame, part: str, label: str, metric: str) -> dict[int, float]:
    """seed -> value of one label and metric of a results table."""
    rows = table[(table["table"] == part) & (table["label"] == label) & (table["metric"] == metric)]
    if rows.empty:
        raise KeyError(f"no {metric!r} of {label!r} in table {part!r}")
    return {int(s): float(v) for s, v in zip(rows["seed"], rows["value"])}


def provenance(table: pd.DataFrame) -> str:
    """One line saying where long-path numbers come from: command, profile, seeds, commits, threads,
    hardware and dates."""
    seeds = sorted({int(s) for s in table["seed"]})
    commits = sorted({str(c) for c in table["commit"].dropna() if str(c) and str(c) != "nan"})
    trained = table[table["run"].notna() & (table["run"].astype(str) != "")] if "run" in table else table
    threads = sorted({str(t) for t in (trained if len(trained) else table)["threads"].dropna()})
    hardware = sorted({str(h) for h in table["hardware"].dropna() if str(h)})
    dates = sorted({str(d) for d in table["date"].dropna()})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}" if dates else "?"
    return (f"`{COMMAND}` ({table['profile'].iloc[0]} profile): seeds {', '.join(map(str, seeds))}; "
            f"commit{'s' * (len(commits) > 1)} {', '.join(commits) or '?'}; "
            f"{'/'.join(threads)} thread{'s' * (threads != ['1'])} per run; "
            f"{'; '.join(hardware) or '?'}; {when}; committed in `exp/summaries/longpath/`")
