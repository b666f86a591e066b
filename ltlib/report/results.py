"""Tables of runs: one row per run, mean ± std over seeds, per-class values, costs and captions.

Few-shot groups hold few classes, so seed noise is large: compare methods seed by seed, with the verdict rule
of :mod:`ltlib.report.findings`, rather than by these means alone.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.env import hardware_label
from ..data.datasets import LongTailData
from ..runs.config import RunConfig
from ..runs.evaluate import predict_logits
from ..runs.experiment import Run
from ..runs.setup import eval_options


METRICS = ("overall", "many", "medium", "few")


Result = Run | dict  # a run, or a row dict with "seed", "overall", "many", "medium", "few" (e.g. a tau sweep's)


def runs_table(runs: Sequence[Result], selection: str = "last") -> pd.DataFrame:
    """One row per run: name, seed and overall / many / medium / few test accuracy (%)."""
    return pd.DataFrame([r.row(selection) if isinstance(r, Run) else r for r in runs])


def summarize(runs_by_label: Mapping[str, Sequence[Result]], selection: str = "last") -> pd.DataFrame:
    """Mean ± sample std over seeds for each label, as numbers and as "mean ± std" text."""
    rows = []
    for label, runs in runs_by_label.items():
        table = runs_table(runs, selection)
        row = {"method": label, "seeds": ",".join(str(s) for s in table["seed"])}
        for m in METRICS:
            values = table[m].to_numpy(dtype=float)
            mean = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
            row[m] = mean
            row[f"{m}_std"] = std
            row[f"{m} (%)"] = format_mean_std(mean, std)
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def format_mean_std(mean: float, std: float) -> str:
    """``"mean ± std"`` to one decimal; the mean alone when std is not finite (one seed); "–" for no value."""
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.1f}" if not np.isfinite(std) else f"{mean:.1f} ± {std:.1f}"


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The text columns of :func:`summarize`, for printing."""
    return summary[["seeds"] + [f"{m} (%)" for m in METRICS]]


def epoch_cost(runs_by_label: Mapping[str, Sequence[Run]], baseline: str) -> pd.DataFrame:
    """Median training seconds per epoch of each method's runs, and its ratio to ``baseline``'s: the cost
    of a step strategy as the notebook paid it (same data, batches and machine; not a benchmark)."""
    rows = []
    for label, runs in runs_by_label.items():
        times = np.concatenate([r.history["train_time_s"].dropna().to_numpy(dtype=float) for r in runs])
        rows.append({"method": label, "s per epoch (median)": float(np.median(times))})
    table = pd.DataFrame(rows).set_index("method")
    table["vs " + baseline] = table["s per epoch (median)"] / table.loc[baseline, "s per epoch (median)"]
    return table.round(2)


def per_class(runs: Sequence[Result], key: str = "per_class", selection: str = "last") -> np.ndarray:
    """Per-class values over seeds (``seeds x classes``): test accuracy, or ``key="classifier_norms"``."""
    def values(r):
        if not isinstance(r, Run):
            return r[key]
        return r.metrics["classifier_norms"] if key == "classifier_norms" else r.result(selection)[key]
    return np.array([values(r) for r in runs])


def eps_ratios(runs: Sequence[Run]) -> np.ndarray:
    """CC-SAM's logged ||eps_c|| / ||theta|| per class, as ``runs x epochs x classes`` (NaN: class not drawn)."""
    out = []
    for r in runs:
        if "eps_ratio" not in r.metrics:
            raise ValueError(f"{r.path.name} logged no perturbation radius: it is not a CC-SAM (step='ccsam') run")
        out.append(np.asarray(r.metrics["eps_ratio"], dtype=float).reshape(r.config.epochs, -1))
    return np.stack(out)


def caption(runs: Sequence[Run] | Mapping[str, Sequence[Run]]) -> str:
    """Data set, imbalance factor, epochs, seeds, groups and hardware of a set of runs, in one line.

    Given models (label -> runs) whose seeds differ, it says which seeds how many models have ("seeds 0,1,2 for
    5 models, 0 for 11"), and takes the rest from the stage-1 runs (a stage-2 run's epochs are its own).
    """
    if isinstance(runs, Mapping):
        seed_sets = Counter(tuple(sorted({r.config.seed for r in rs})) for rs in runs.values() if rs)
        stage1 = [r for rs in runs.values() for r in rs if isinstance(r.config, RunConfig)]
        text = caption(stage1 or [r for rs in runs.values() for r in rs])
        if len(seed_sets) > 1:
            each = ", ".join(f"{','.join(map(str, seeds))} for {n} model{'s' if n > 1 else ''}"
                             for seeds, n in sorted(seed_sets.items(), key=lambda item: (-len(item[0]), item[0])))
            text = re.sub(r"seeds [0-9]+(?:,[0-9]+)*", lambda _: f"seeds {each}", text, count=1)
        return text
    first = runs[0]
    seeds = sorted({r.config.seed for r in runs})
    epochs = sorted({r.config.epochs for r in runs})
    hardware = sorted({hardware_label(r.environment) for r in runs})
    data = first.metrics["data"]
    return (f"{first.config.dataset}, IF={first.config.imbalance_factor:g}, {data['train_size']} training images "
            f"(head {data['n_max']}), {'/'.join(map(str, epochs))} epochs, seeds {','.join(map(str, seeds))}, "
            f"{first.metrics['group_scheme']} groups, last epoch, {'; '.join(hardware)}")


def confusion_matrix(run: Run, data: LongTailData) -> np.ndarray:
    """Test-set confusion counts of ``run``'s model, rows the true class and columns the predicted one (the same
    predictions its accuracy is computed from: last epoch, no test-time augmentation)."""
    logits = predict_logits(run.model, data.test.images, **eval_options(run.config, data))
    predicted, truth = logits.argmax(1).cpu().numpy(), data.test.labels.cpu().numpy()
    return np.bincount(truth * data.num_classes + predicted, minlength=data.num_classes ** 2).reshape(
        data.num_classes, data.num_classes)


def extreme_classes_accuracy(run: Run, k: int, rarest: bool) -> float:
    """Mean test accuracy over the ``k`` rarest (or most frequent) training classes of ``run``: a head and a tail
    that keep the same classes at every imbalance factor, where the strict groups do not (at IF 10 on a head of 1000
    no class has fewer than 20 images, so "few" is empty)."""
    counts = np.asarray(run.metrics["class_counts"])
    order = np.argsort(counts, kind="stable")
    chosen = order[:k] if rarest else order[::-1][:k]
    return float(np.mean(np.asarray(run.result()["per_class"])[chosen]))


def sweep_table(results_by_label: Mapping[str, Sequence[Result]], separator: str = " @ IF ",
                extra: Mapping[str, Callable[[Run], float]] | None = None) -> pd.DataFrame:
    """Long table of a sweep whose labels read ``"<method><separator><value>"``: method, value, seed and every
    metric the results carry (a run's, with the ``extra`` functions of it), plus ``gap`` = head - tail where both
    are present."""
    rows = []
    for label, results in results_by_label.items():
        method, value = label.rsplit(separator, 1)
        for r in results:
            values = ({**r.row(), **{name: fn(r) for name, fn in (extra or {}).items()}} if isinstance(r, Run)
                      else dict(r))
            rows.append({"method": method, "value": float(value), **values})
    table = pd.DataFrame(rows)
    if {"head", "tail"} <= set(table.columns):
        table["gap"] = table["head"] - table["tail"]
    return table
