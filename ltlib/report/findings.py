"""Findings: what a notebook may say about its runs, computed from them and worded by one stated rule.

A :class:`Finding` compares two labelled sets of runs (or of per-seed values) on one metric: the runs are
paired by seed, the difference is ``b - a`` (in percentage points for accuracies), and the verdict words
follow :data:`RULE`:

- **one seed**: the difference is reported as one seed's, with no verdict. Few-shot accuracy moves by ten
  points and more between seeds here, so one seed cannot tell a method's effect from seed noise;
- **several seeds**: the seeds where ``b`` is higher and lower are counted ("higher in every seed",
  "higher in 2 of 3 seeds"), and the 95 % t-interval of the mean paired difference (n - 1 degrees of
  freedom) decides "beyond the seed noise" (it excludes 0) or "within the seed noise" (it holds 0).

A difference is *resolved* when its sign holds in every seed and its interval excludes 0. Notebooks render
the sentences (:meth:`Finding.sentence`) and tables (:func:`findings_table`) with :func:`show`, so that
every number and verdict in their prose comes from the runs above it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .results import METRICS, Result, runs_table


RULE = ("paired by seed; one seed: no verdict; several seeds: the sign of the difference counted over the "
        "seeds (a difference below half the last printed digit counts as equal), and 'beyond the seed noise' when "
        "the 95 % t-interval of the mean paired difference excludes 0")

METRIC_NAMES = {"overall": "overall accuracy", "many": "many-shot accuracy", "medium": "medium-shot accuracy",
                "few": "few-shot accuracy"}


def t_critical(df: int, level: float = 0.95) -> float:
    """The two-sided Student-t critical value with ``df`` degrees of freedom (``level`` coverage).

    Computed by integrating the t density and bisecting, so that no statistics package is needed
    (scipy is not a dependency); accurate to about 1e-6.
    """
    if df < 1:
        raise ValueError(f"a t-interval needs df >= 1 (two seeds or more), got df={df}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def central_mass(t: float) -> float:       # P(|T| <= t), Simpson's rule on [0, t]
        x = np.linspace(0.0, t, 20001)
        pdf = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
        h = x[1] - x[0]
        return float(2 * h / 3 * (pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum()))

    lo, hi = 0.0, 1.0
    while central_mass(hi) < level:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if central_mass(mid) < level else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Finding:
    """``b`` against ``a`` on ``metric``, paired by seed (see the module docstring for the rule)."""

    a: str
    b: str
    metric: str
    seeds: tuple[int, ...]
    a_values: tuple[float, ...]
    b_values: tuple[float, ...]
    unit: str = "points"

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError(f"{self.b} against {self.a}: no seed in common, nothing to pair")
        if not len(self.seeds) == len(self.a_values) == len(self.b_values):
            raise ValueError("seeds, a_values and b_values must have one entry per seed")

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def differences(self) -> np.ndarray:
        return np.asarray(self.b_values, dtype=float) - np.asarray(self.a_values, dtype=float)

    @property
    def mean(self) -> float:
        return float(self.differences.mean())

    @property
    def digits(self) -> int:
        """Decimals printed: 1 for accuracy points, 3 otherwise."""
        return 1 if self.unit == "points" else 3

    @property
    def tolerance(self) -> float:
        """Half the last printed digit: a smaller difference prints as zero, and counts as equal."""
        return 0.5 * 10 ** -self.digits

    @property
    def higher(self) -> int:
        """Seeds where ``b`` is above ``a`` (by more than :attr:`tolerance`)."""
        return int((self.differences > self.tolerance).sum())

    @property
    def lower(self) -> int:
        return int((self.differences < -self.tolerance).sum())

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % t-interval of the mean paired difference; None with one seed."""
        if self.n < 2:
            return None
        half = t_critical(self.n - 1) * float(self.differences.std(ddof=1)) / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    @property
    def beyond_noise(self) -> bool | None:
        """Whether the interval excludes 0; None with one seed (no verdict)."""
        ci = self.interval
        return None if ci is None else bool(ci[0] > 0 or ci[1] < 0)

    @property
    def consistency(self) -> str:
        """"one seed", "higher in every seed", "lower in every seed", "equal in every seed" or a count."""
        if self.n == 1:
            return "one seed"
        if self.higher == self.n:
            return "higher in every seed"
        if self.lower == self.n:
            return "lower in every seed"
        if self.higher == 0 and self.lower == 0:
            return "equal in every seed"
        equal = self.n - self.higher - self.lower
        parts = [f"{word} in {k}" for word, k in (("higher", self.higher), ("lower", self.lower), ("equal", equal)) if k]
        return f"{parts[0]} of {self.n} seeds" + "".join(f", {p}" for p in parts[1:])

    @property
    def resolved(self) -> bool:
        """The sign holds in every seed and the interval excludes 0."""
        return self.n > 1 and (self.higher == self.n or self.lower == self.n) and bool(self.beyond_noise)

    @property
    def verdict(self) -> str:
        if self.n == 1:
            return "one seed: no verdict"
        noise = "beyond the seed noise" if self.beyond_noise else "within the seed noise"
        return f"{self.consistency}, {noise}"

    def _num(self, value: float) -> str:
        return signed(value, self.digits)

    def values_text(self) -> str:
        """The per-seed differences, e.g. ``"+2.0 / −0.5 / +1.1 (seeds 0 / 1 / 2)"``."""
        each = " / ".join(self._num(d) for d in self.differences)
        seeds = " / ".join(str(s) for s in self.seeds)
        return f"{each} (seed{'s' * (self.n > 1)} {seeds})"

    def sentence(self, what: str | None = None) -> str:
        """One Markdown sentence: the difference, its per-seed values, and the verdict by :data:`RULE`."""
        metric = METRIC_NAMES.get(self.metric, self.metric)
        unit = f" {self.unit}" if self.unit else ""
        lead = what or f"**{self.b}** against **{self.a}**, {metric}"
        if self.n == 1:
            return (f"{lead}: {self._num(self.mean)}{unit} on one seed (seed {self.seeds[0]}); one seed cannot "
                    "separate a difference from seed noise, so no verdict.")
        lo, hi = self.interval
        return (f"{lead}: {self._num(self.mean)}{unit} on average, {self.values_text()}; {self.consistency}, "
                f"{'beyond' if self.beyond_noise else 'within'} the seed noise (95 % t-interval "
                f"{self._num(lo)} to {self._num(hi)}).")

    def row(self) -> dict:
        """The finding as a table row."""
        ci = self.interval
        return {"b": self.b, "a": self.a, "metric": self.metric, "seeds": ",".join(map(str, self.seeds)),
                "b − a (mean)": round(self.mean, 3), "per seed": self.values_text().split(" (")[0],
                "95 % t-interval": "" if ci is None else f"{self._num(ci[0])} to {self._num(ci[1])}",
                "verdict": self.verdict}


def _by_seed(results: Sequence[Result], metric: str, selection: str) -> dict[int, float]:
    table = runs_table(results, selection)
    if metric not in table.columns:
        raise KeyError(f"the runs have no metric {metric!r}; they have {[c for c in table.columns if c in METRICS]}")
    return {int(s): float(v) for s, v in zip(table["seed"], table[metric])}


def from_values(a: str, a_values: Mapping[int, float], b: str, b_values: Mapping[int, float], metric: str,
                unit: str = "points") -> Finding:
    """A finding from per-seed values (seed -> value) of each side, paired on the seeds they share."""
    seeds = tuple(sorted(set(a_values) & set(b_values)))
    return Finding(a, b, metric, seeds, tuple(float(a_values[s]) for s in seeds),
                   tuple(float(b_values[s]) for s in seeds), unit)


def compare(a: str, runs_a: Sequence[Result], b: str, runs_b: Sequence[Result], metric: str = "overall", *,
            selection: str = "last") -> Finding:
    """``b``'s runs against ``a``'s on an accuracy ``metric`` (overall / many / medium / few), paired by seed."""
    return from_values(a, _by_seed(runs_a, metric, selection), b, _by_seed(runs_b, metric, selection), metric)


def compare_all(runs: Mapping[str, Sequence[Result]], baseline: str, metrics: Sequence[str] = ("overall", "few"),
                labels: Sequence[str] | None = None) -> list[Finding]:
    """Every label (or ``labels``) against ``baseline``, on each metric."""
    if baseline not in runs:
        raise KeyError(f"no runs labelled {baseline!r}; labels: {list(runs)}")
    chosen = [label for label in (labels or runs) if label != baseline]
    return [compare(baseline, runs[baseline], label, runs[label], m) for label in chosen for m in metrics]


def findings_table(findings: Sequence[Finding]) -> pd.DataFrame:
    """One row per finding: both labels, the metric, the seeds, the mean and per-seed differences, the
    interval and the verdict."""
    return pd.DataFrame([f.row() for f in findings])


def best(summary: pd.DataFrame, metric: str = "overall") -> tuple[str, float]:
    """The label with the highest mean ``metric`` in a :func:`ltlib.report.results.summarize` table, and that mean."""
    label = summary[metric].astype(float).idxmax()
    return label, float(summary.loc[label, metric])


def signed(value: float, digits: int = 1) -> str:
    """``+1.2`` or ``−1.2`` (a typographic minus), as the findings write differences."""
    return f"{value:+.{digits}f}".replace("-", "−")


def count_text(k: int, n: int, what: str) -> str:
    """``"9 of 16 models"``, or ``"all 16 models"`` / ``"none of the 16 models"`` at the extremes."""
    if n and k == n:
        return f"all {n} {what}"
    if k == 0:
        return f"none of the {n} {what}"
    return f"{k} of {n} {what}"


def show(*lines: str) -> None:
    """Render Markdown text in the notebook (joined as paragraphs); printed as plain text outside IPython."""
    text = "\n\n".join(line for line in lines if line)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:               # pragma: no cover - IPython comes with the notebooks extra
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))


def bullets(items: Sequence[str]) -> str:
    """A Markdown bullet list."""
    return "\n".join(f"- {item}" for item in items if item)
