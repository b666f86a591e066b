"""Which of the papers' claims reproduce: each claim checked on the notebooks' own results, by a stated rule.

A :class:`Claim` is a paper's statement that ``b`` beats ``a`` (with the reported numbers behind it, from
:mod:`ltlib.report.papers`), and the notebook results table and labels that test it here. :func:`check` pairs the two
labels by seed (:func:`ltlib.report.findings.compare`) in a results file (the reader's ``exp/tables/`` or the committed
long path) and words the verdict by :data:`VERDICT_RULE`.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..runs.experiment import default_exp_dir
from . import findings as F, longpath
from .papers import reported


VERDICT_RULE = ("'reproduces' when the paired difference is resolved (same sign in every seed and beyond the seed "
                "noise) in the paper's direction; 'reversed' when it is resolved against it; 'not resolved' "
                "otherwise; 'one seed: no verdict' with one seed")


@dataclass(frozen=True)
class Claim:
    """The paper says ``b`` is better than ``a`` on ``metric``; notebook ``notebook``'s table ``table`` tests it."""

    text: str
    notebook: str
    table: str
    a: str
    b: str
    metric: str = "overall"
    reported: tuple[str, str] | None = None     # ltlib.report.papers keys of a and b
    unit: str = "points"

    def paper(self) -> str:
        if self.reported is None:
            return ""
        a, b = (reported(k) for k in self.reported)
        return f"{a.value:g} → {b.value:g} ({b.source})"


CLAIMS = (
    Claim("Weight decay lifts a CE model (WB)", "01", "runs", "WD 0", "WD 0.005",
          reported=("wb/stage1-no-wd", "wb/stage1-wd")),
    Claim("WB's stage 2 (CB loss + WD + MaxNorm) lifts it further", "02", "repairs", "stage 1, WD 0.005",
          "WB stage 2, MaxNorm per epoch (demo)", reported=("wb/stage1-wd", "wb/stage2")),
    Claim("τ-normalisation (τ = 1.9) lifts it", "02", "repairs", "stage 1, WD 0.005", "+ τ-norm, τ = 1.9 (the demo's)",
          reported=("wb/stage1-wd", "wb/tau-norm")),
    Claim("SAM beats SGD (ImbSAM README)", "03", "runs", "SGD", "SAM ρ=0.05", reported=("imbsam/sgd", "imbsam/sam")),
    Claim("ImbSAM beats SAM", "03", "runs", "SAM ρ=0.05", "ImbSAM ρ=0.05", reported=("imbsam/sam", "imbsam/imbsam")),
    Claim("ImbSAM's perturbation lifts the tail (ImbSAM against itself at ρ = 0)", "03", "runs",
          "ImbSAM ρ=0 (×2 tail weight only)", "ImbSAM ρ=0.05", metric="few"),
    Claim("Mixup lifts CE (CC-SAM poster)", "04", "runs", "CE", "CE + mixup", reported=("ccsam/ce", "ccsam/mixup")),
    Claim("CC-SAM beats CE + mixup → cRT", "04", "runs", "CE + mixup → cRT (class-aware)", "CC-SAM stages 1 + 2",
          reported=("ccsam/mixup-crt", "ccsam/ccsam")),
    Claim("CMO lifts CE", "05", "runs", "CE", "CE + CMO", reported=("cmo/ce", "cmo/ce-cmo")),
    Claim("BS + CMO beats CE + CMO", "05", "runs", "CE + CMO", "BS + CMO", reported=("cmo/ce-cmo", "cmo/bs-cmo")),
    Claim("LDAM-DRW beats CE (CC-SAM poster)", "05", "runs", "CE", "LDAM-DRW", reported=("ccsam/ce", "ccsam/ldam-drw")),
    Claim("LDAM-DRW sits in a sharper minimum than CE (CC-SAM poster; loss increase at σ)", "06", "contrast",
          "05 CE", "05 LDAM-DRW", metric="Δloss", unit=""),
)


def verdict(finding: F.Finding) -> str:
    """The claim's verdict from its finding, by :data:`VERDICT_RULE` (the paper's direction: ``b`` higher)."""
    if finding.n == 1:
        return "one seed: no verdict"
    if not finding.resolved:
        return "not resolved"
    return "reproduces" if finding.mean > 0 else "reversed"


def check(claim: Claim, table: pd.DataFrame | None) -> dict:
    """The claim's finding in one results table (a results file read with :func:`ltlib.report.longpath.load` or
    ``pandas.read_csv``): the mean difference, its seeds and the verdict; "not run" when a label is missing."""
    empty = {"b − a": "", "seeds": "", "verdict": "not run"}
    if table is None:
        return empty
    part = table[table["table"] == claim.table]
    labels = set(part["label"])
    if claim.a not in labels or claim.b not in labels:
        return empty
    finding = F.from_values(claim.a, longpath.values(table, claim.table, claim.a, claim.metric), claim.b,
                            longpath.values(table, claim.table, claim.b, claim.metric), claim.metric, claim.unit)
    return {"b − a": F.signed(finding.mean, finding.digits), "seeds": ",".join(map(str, finding.seeds)),
            "verdict": verdict(finding)}


def claims_table(yours: dict[str, pd.DataFrame | None], committed: dict[str, pd.DataFrame | None],
                 claims=CLAIMS) -> pd.DataFrame:
    """One row per claim: what the paper reported, and the finding and verdict in the reader's run (``yours``:
    notebook -> results table) and in the committed long path (``committed``)."""
    rows = []
    for claim in claims:
        mine, theirs = check(claim, yours.get(claim.notebook)), check(claim, committed.get(claim.notebook))
        rows.append({"claim": claim.text, "notebook": claim.notebook, "metric": claim.metric,
                     "compared": f"{claim.b} − {claim.a}", "reported (paper)": claim.paper(),
                     "your run: b − a": mine["b − a"], "your seeds": mine["seeds"], "your verdict": mine["verdict"],
                     "long path: b − a": theirs["b − a"], "long-path seeds": theirs["seeds"],
                     "long-path verdict": theirs["verdict"]})
    return pd.DataFrame(rows)


def own_results(notebook: str, dataset: str, profile: str) -> pd.DataFrame | None:
    """The results table a notebook of this series saved in ``exp/tables/`` (None if it has not run)."""
    path = default_exp_dir() / "tables" / longpath.file_name(notebook, dataset, profile)
    return pd.read_csv(path, dtype={"commit": str, "label": str}) if path.is_file() else None
