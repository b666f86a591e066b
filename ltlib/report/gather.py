"""Every finished run under ``exp/`` in one pandas table, and the same table aggregated over seeds.

``gather_runs`` reads each run folder's ``config.json``, ``metrics.json`` and ``environment.json`` (the
models are not loaded, so it is fast); ``summarize_runs`` groups the runs that differ only in their seed
and reports mean ± std; ``export_table`` writes CSV and Markdown. A folder without ``metrics.json`` is an
unfinished run and is skipped; a damaged one is skipped with a warning.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..analysis.calibration import run_calibration
from ..core import io
from ..core.env import hardware_label
from ..runs.experiment import config_from_dict, default_exp_dir, is_finished, run_dir
from . import papers
from .results import METRICS, format_mean_std, summarize


RUN_COLUMNS = ("run", "name", "stage", "method", "loss", "reweight", "sampler", "mixing", "step", "stage2",
               "stage2_loss", "stage2_sampler", "stage2_step", "dataset", "imbalance_factor", "epochs", "profile",
               "seed", *METRICS, "train_time_s", "hardware", "group", "path", "config")


def describe_method(config) -> dict:
    """The axes of a run (loss, re-weighting, sampler, mixing, step strategy; stage 2's recipe) and a label."""
    s1 = config.model_config
    axes = {"loss": s1.loss, "reweight": s1.reweight, "sampler": s1.sampler, "mixing": s1.mixing, "step": s1.step}
    parts = [s1.loss.upper() + ("-DRW" if s1.reweight == "drw" else "")]
    parts += [s1.step.upper()] if s1.step != "sgd" else []
    parts += [s1.mixing] if s1.mixing != "none" else []
    parts += [f"{s1.sampler} sampler"] if s1.sampler != "instance" else []
    method = " + ".join(parts)
    if config is not s1:
        axes.update(stage2=config.recipe, stage2_loss=config.loss, stage2_sampler=config.sampler,
                    stage2_step=config.step)
        method += f" → stage 2 {config.recipe}"
    return {"method": method, **axes}


def _row(path: Path) -> dict | None:
    if not is_finished(path):
        return None
    try:
        config = config_from_dict(io.read_json(path / "config.json"))
        metrics = io.read_json(path / "metrics.json")
        env = io.read_json(path / "environment.json") if (path / "environment.json").is_file() else {}
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(f"skipping {path}: {err}", stacklevel=3)
        return None
    last = metrics["last"]["test"]
    return {
        "run": path.name, "name": config.name, "stage": 1 if config is config.model_config else 2,
        **describe_method(config), "dataset": config.data_config.dataset,
        "imbalance_factor": config.imbalance_factor, "epochs": config.epochs, "profile": config.profile,
        "seed": config.seed, **{m: last[m] for m in METRICS},
        "train_time_s": metrics.get("train_time_s"), "hardware": hardware_label(env) if env else "",
        "group": run_dir(config.with_seed(0), path.parent.parent, _device_kind(env)).name, "path": str(path),
        "config": _flat(config.to_dict()),
    }


def _device_kind(env: dict) -> torch.device:
    """The kind of device a run folder's environment record names (CPU where it names none)."""
    return torch.device(str(env.get("device") or "cpu").split(":")[0])


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif k not in ("seed", "name"):
            out[prefix + k] = v
    return out


def _variants(runs: pd.DataFrame) -> dict[str, str]:
    """Per group: the settings that tell it apart from the other groups of the same name ("" if it is alone)."""
    labels = {}
    for _, same in runs.groupby("name", sort=False):
        firsts = same.groupby("group", sort=False)["config"].first()
        if len(firsts) == 1:
            labels[firsts.index[0]] = ""
            continue
        keys = sorted({k for c in firsts for k in c if len({repr(o.get(k)) for o in firsts}) > 1})
        for group, c in firsts.items():
            labels[group] = ", ".join(f"{k}={c.get(k)}" for k in keys)
    return labels


def gather_runs(exp_dir: str | Path | None = None, dataset: str | None = None) -> pd.DataFrame:
    """One row per finished run under ``exp_dir`` (``exp/`` by default), optionally of one data set."""
    root = Path(exp_dir or default_exp_dir())
    folders = sorted(root.glob(f"{dataset or '*'}/*/"))
    rows = [r for r in (_row(p) for p in folders) if r is not None]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def summarize_runs(runs: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per config across seeds: the run's axes, the settings that set it apart from other configs of
    the same name (``variant``), the seeds, and mean / std of the accuracies, the training time and any
    ``extra`` numeric columns (ECE, say)."""
    numeric = [*METRICS, "train_time_s", *extra]
    variants = _variants(runs)
    rows = []
    for group, part in runs.groupby("group", sort=False):
        first = part.iloc[0]
        row = {k: first[k] for k in runs.columns if k not in (*numeric, "seed", "run", "path", "group", "config")}
        row["variant"] = variants[group]
        row["seeds"] = ",".join(str(s) for s in sorted(part["seed"]))
        row["n"] = len(part)
        for m in numeric:
            values = part[m].astype(float)
            row[f"{m}_mean"] = values.mean()
            row[f"{m}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        rows.append(row)
    if not rows:
        keep = [c for c in runs.columns if c not in (*numeric, "seed", "run", "path", "group", "config")]
        return pd.DataFrame(columns=[*keep, "variant", "seeds", "n", *(f"{m}_{s}" for m in numeric for s in ("mean", "std"))])
    return pd.DataFrame(rows)


def display_summary(summary: pd.DataFrame, columns: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """``mean ± std`` strings for ``columns``, beside the run's name, method, variant, epochs and seeds."""
    out = summary[["name", "method", "variant", "epochs", "seeds"]].copy()
    for m in columns:
        out[m] = [format_mean_std(a, b) for a, b in zip(summary[f"{m}_mean"], summary[f"{m}_std"])]
    return out


def export_table(table: pd.DataFrame, stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` (each written whole, then renamed into place)."""
    stem = Path(stem)
    csv, md = stem.with_suffix(".csv"), stem.with_suffix(".md")
    io.write_text(csv, table.to_csv(index=False))
    io.write_text(md, markdown(table))
    return csv, md


def markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (no extra dependency: pandas' ``to_markdown`` needs ``tabulate``)."""
    def cell(v) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.2f}"
        return str(v).replace("|", "\\|")
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def headline_table(runs_by_label, reported: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per label of finished runs (several seeds each): accuracy mean and std (:func:`ltlib.report.results.summarize`),
    ECE (15 bins, test set, cached beside each run), training seconds per run, hardware, and the reported number
    of ``reported[label]`` (a key of :data:`ltlib.report.papers.REPORTED`) if given."""
    accuracy = summarize(runs_by_label)
    table = accuracy[["seeds", *(c for m in METRICS for c in (m, f"{m}_std"))]].rename(
        columns={m: f"{m}_mean" for m in METRICS})
    for label, runs in runs_by_label.items():
        table.loc[label, "n"] = len(runs)
        for column, values in (("ece", [run_calibration(r)["ece"] for r in runs]),
                               ("train_time_s", [r.metrics.get("train_time_s", np.nan) for r in runs])):
            v = np.asarray(values, dtype=float)
            table.loc[label, f"{column}_mean"] = v.mean()
            table.loc[label, f"{column}_std"] = v.std(ddof=1) if len(v) > 1 else np.nan
        table.loc[label, "hardware"] = "; ".join(sorted({hardware_label(r.environment) for r in runs}))
        if reported is not None:
            key = reported.get(label)
            table.loc[label, "reported C100-LT IF100"] = f"{papers.reported(key).value:g} ({papers.reported(key).source})" \
                if key else ""
    table.index.name = None
    return table
