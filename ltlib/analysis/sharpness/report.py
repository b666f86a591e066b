"""One call per trained run: every analysis of notebook 06, cached beside the run, and the table that
ties sharpness to accuracy.

The result is stored as ``sharpness-<key>.json`` in the run's folder, the key hashing the settings, the
seed, the directions and :data:`ANALYSIS_VERSION` (bump it when a change alters the numbers), so a
rerun of the notebook only analyses what it has not analysed before.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ...core import io
from ...core.env import threads_for_run
from ...core.errors import ConfigError
from ...methods.sam import tail_classes_from_counts
from ...runs.experiment import Run, load_data, load_run
from ...runs.workers import Task, default_jobs, run_tasks
from .analysis import ascent_direction, hessian_by_group, landscape_1d, perturbation_spread, random_directions
from .directions import direction_norm
from .probe import Probe, make_probe
from .settings import AnalysisSettings


ANALYSIS_VERSION = 2     # 2: the ascent landscapes span a few SAM steps instead of alpha_range


@dataclass
class RunSharpness:
    """The analyses of one run: perturbation spread, per-scope Hessian, 1-D landscape (long tables)."""

    spread: pd.DataFrame
    hessian: pd.DataFrame
    landscape: pd.DataFrame
    probe: str
    seconds: float

    def to_json(self) -> dict:
        return {"spread": self.spread.to_dict("records"), "hessian": self.hessian.to_dict("records"),
                "landscape": self.landscape.to_dict("records"), "probe": self.probe, "seconds": self.seconds}

    @classmethod
    def from_json(cls, d: dict) -> "RunSharpness":
        return cls(pd.DataFrame(d["spread"]), pd.DataFrame(d["hessian"]), pd.DataFrame(d["landscape"]),
                   d["probe"], float(d["seconds"]))


def probe_for(run: Run, settings: AnalysisSettings, seed: int = 0, device: torch.device | str | None = None,
              loss: str = "predict") -> Probe:
    """The run's own training images (at most ``settings.probe_per_class`` per class), with its analysis loss
    (``loss``: see :func:`~ltlib.analysis.sharpness.probe.make_probe`)."""
    device = device or next(run.model.parameters()).device
    data = load_data(run.config.data_config)
    return make_probe(data, run.config, per_class=settings.probe_per_class, seed=seed, device=device, loss=loss)


def _cache_path(run: Run, settings: AnalysisSettings, seed: int, ascent_eta: int | None) -> Path:
    """Where :func:`analyse_run` keeps the analysis of ``run`` with these settings."""
    return run.path / f"sharpness-{_key(settings, seed, ascent_eta)}.json"


def _key(settings: AnalysisSettings, seed: int, ascent_eta: int | None) -> str:
    blob = json.dumps({"settings": dataclasses.asdict(settings), "seed": seed, "ascent_eta": ascent_eta,
                       "version": ANALYSIS_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def analyse_run(run: Run, settings: AnalysisSettings, *, seed: int = 0, ascent_eta: int | None = None,
                cache: bool = True, progress: bool = False) -> RunSharpness:
    """Perturbation spread, Hessian by group and a 1-D landscape of ``run``'s model (cached in its folder).

    The landscape runs along one filter-normalised random direction; with ``ascent_eta`` it also runs
    along SAM's ascent direction (the probe-loss gradient) and ImbSAM's (the gradient of the classes with
    fewer than ``ascent_eta`` training images).
    """
    path = _cache_path(run, settings, seed, ascent_eta)
    if cache and path.is_file():
        try:
            return RunSharpness.from_json(io.read_json(path))
        except (OSError, ValueError, KeyError, TypeError) as err:
            warnings.warn(f"{path} is damaged ({err}); analysing {run.path.name} again.", stacklevel=2)
    with threads_for_run(next(run.model.parameters()).device):   # the numbers do not depend on the core count
        start = time.perf_counter()
        model = run.model
        probe = probe_for(run, settings, seed)
        spread = perturbation_spread(model, probe, settings.sigmas, draws=settings.draws, seed=seed, progress=progress)
        hessian = pd.concat([hessian_by_group(model, probe, max_images=settings.hessian_images,
                                              iters=settings.hessian_iters, samples=settings.hessian_samples, seed=seed,
                                              scale=scale, progress=progress)
                             for scale in settings.hessian_scales], ignore_index=True)
        alphas = np.linspace(-settings.alpha_range, settings.alpha_range, settings.alpha_points)
        landscape = landscape_1d(model, probe, {"random": random_directions(model, 1, seed=seed)[0]}, alphas,
                                 progress=progress)
        if ascent_eta is not None:
            landscape = pd.concat([landscape, ascent_landscapes(run, model, probe, settings, ascent_eta, progress)],
                                  ignore_index=True)
        result = RunSharpness(spread, hessian, landscape, probe.description, time.perf_counter() - start)
    if cache:
        io.write_json(path, result.to_json())
    return result


def ascent_landscapes(run: Run, model: torch.nn.Module, probe: Probe, settings: AnalysisSettings, eta: int,
                      progress: bool = False) -> pd.DataFrame:
    """The loss along SAM's ascent direction (the probe-loss gradient) and ImbSAM's (the gradient of the classes
    with fewer than ``eta`` training images), filter-normalised like a random direction, over
    ``+-settings.ascent_steps`` steps of norm ``settings.ascent_rho``: the scale of SAM's own step, where the
    curves of different models separate (a column ``steps`` gives each point in those units)."""
    directions = {"SAM ascent": ascent_direction(model, probe)}
    tail = tail_classes_from_counts(run.metrics["class_counts"], eta)
    if tail:
        directions["ImbSAM ascent"] = ascent_direction(model, probe, classes=tail)
    steps = np.linspace(-settings.ascent_steps, settings.ascent_steps, settings.alpha_points)
    parts = []
    for name, direction in directions.items():
        unit = settings.ascent_rho / direction_norm(direction)       # the alpha of one step of norm rho
        part = landscape_1d(model, probe, {name: direction}, steps * unit, progress=progress)
        part["steps"] = part["alpha"] / unit
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def analyse_runs(runs: Mapping[str, Run], settings: AnalysisSettings, *, seed: int = 0,
                 ascent_eta: Mapping[str, int] | None = None, jobs: int | None = None,
                 progress: bool = False) -> dict[str, RunSharpness]:
    """:func:`analyse_run` for every run (``ascent_eta`` maps the labels that get ascent directions to their
    eta), the uncached ones ``jobs`` at a time in worker processes (default :func:`ltlib.runs.workers.default_jobs`;
    smoke-profile runs stay in this process unless ``jobs`` is given)."""
    etas = dict(ascent_eta or {})
    unknown = set(etas) - set(runs)
    if unknown:
        raise ConfigError(f"ascent_eta names labels that are not in runs: {sorted(unknown)}")
    todo = [label for label, r in runs.items() if not _cache_path(r, settings, seed, etas.get(label)).is_file()]
    on_cpu = all(next(r.model.parameters()).device.type == "cpu" for r in runs.values())
    n_jobs = default_jobs("cpu") if jobs is None else int(jobs)
    smoke = jobs is None and all(r.config.profile == "smoke" for r in runs.values())   # shorter than a start-up
    if len(todo) > 1 and n_jobs > 1 and on_cpu and not smoke:
        blob = json.dumps(dataclasses.asdict(settings))
        run_tasks([Task(runs[label].path.name, "ltlib.analysis.sharpness.report:analyse_path",
                       [str(runs[label].path.resolve()), blob, str(seed), str(etas.get(label, ""))]) for label in todo],
                  n_jobs, desc="analysing", progress=progress)
    return {label: analyse_run(r, settings, seed=seed, ascent_eta=etas.get(label), progress=progress)
            for label, r in runs.items()}


def analyse_path(run_path: str, settings_json: str, seed: str, ascent_eta: str) -> None:
    """A worker's :func:`analyse_run` of the run folder ``run_path`` (the arguments as text)."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(settings_json).items()}
    analyse_run(load_run(run_path), AnalysisSettings(**values), seed=int(seed),
                ascent_eta=int(ascent_eta) if ascent_eta else None)


def sharpness_table(results: Mapping[str, RunSharpness], runs: Mapping[str, Run], sigma: float) -> pd.DataFrame:
    """One row per model: test accuracy (overall, many, few), the probe loss, the loss increase and its
    spread over the draws at ``sigma``, and the top Hessian eigenvalue and trace per scope, raw (λ, tr)
    and in filter-normalised coordinates (λ~, tr~) where measured."""
    rows = {}
    for label, res in results.items():
        test = runs[label].result()
        s = res.spread[np.isclose(res.spread["sigma"], sigma)].groupby("scope")
        increase, spread = s["loss_increase"].mean(), s["loss"].std()
        row = {"test overall": test["overall"], "test many": test["many"], "test few": test["few"],
               "train loss": (s["loss"].mean() - increase).get("overall", np.nan),
               "Δloss": increase.get("overall", np.nan), "spread": spread.get("overall", np.nan),
               "Δloss many": increase.get("many", np.nan), "Δloss few": increase.get("few", np.nan)}
        h = res.hessian
        for scale, mark in (("none", ""), ("filter", "~")):
            part = h[h["scale"] == scale].set_index("scope") if "scale" in h else h.iloc[:0]
            if part.empty:
                continue
            for scope, suffix in (("overall", ""), ("many", " many"), ("few", " few")):
                row[f"λ{mark}{suffix}"] = part["top_eigenvalue"].get(scope, np.nan)
            for scope, suffix in (("overall", ""), ("few", " few")):
                row[f"tr{mark}{suffix}"] = part["trace"].get(scope, np.nan)
        rows[label] = row
    table = pd.DataFrame(rows).T.astype(float)
    table.attrs["sigma"] = sigma
    return table


def rank_correlations(table: pd.DataFrame, accuracy: str = "test few",
                      measures: tuple[str, ...] | None = None) -> pd.Series:
    """Spearman rank correlation of each sharpness measure (every non-accuracy column by default) with an
    accuracy column, over the models."""
    measures = measures or tuple(c for c in table.columns if not c.startswith("test") and c != "train loss")
    ranks = table.astype(float).rank()
    return pd.Series({m: float(np.corrcoef(ranks[m], ranks[accuracy])[0, 1]) for m in measures},
                     name=f"Spearman with {accuracy}")


def seed_table(analysed: Mapping[str, Sequence[tuple[Run, RunSharpness]]], sigma: float) -> pd.DataFrame:
    """:func:`sharpness_table` for several seeds of each model: one row per (model, seed)."""
    rows = []
    for label, pairs in analysed.items():
        for run, res in pairs:
            row = sharpness_table({label: res}, {label: run}, sigma).iloc[0]
            rows.append({"model": label, "seed": run.config.seed, **row.to_dict()})
    return pd.DataFrame(rows).set_index(["model", "seed"])


def sharper_count(per_seed: pd.DataFrame, first: str, second: str, measures: Sequence[str]) -> pd.DataFrame:
    """Per measure: the mean of each model over the seeds, and in how many seeds ``second`` measures
    sharper (larger) than ``first``, paired by seed."""
    a, b = per_seed.loc[first], per_seed.loc[second]
    seeds = a.index.intersection(b.index)
    return pd.DataFrame({m: {f"{first} (mean)": a.loc[seeds, m].mean(), f"{second} (mean)": b.loc[seeds, m].mean(),
                             f"seeds where {second} is sharper": f"{int((b.loc[seeds, m] > a.loc[seeds, m]).sum())} of {len(seeds)}"}
                         for m in measures}).T


def spread_at(model: torch.nn.Module, probe: Probe, sigma: float, *, draws: int = 5, norm: str = "filter",
              seed: int = 0, scope: str = "overall") -> tuple[float, float]:
    """The mean loss increase and the spread (std over ``draws``) of one scope at one sigma."""
    table = perturbation_spread(model, probe, [sigma], draws=draws, norm=norm, seed=seed)
    part = table[table["scope"] == scope]
    return float(part["loss_increase"].mean()), float(part["loss"].std())
