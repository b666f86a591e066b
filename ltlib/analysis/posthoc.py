"""Post-hoc repairs of a trained model's classifier: L2 / tau-normalisation of its rows (notebook 02), and logit
adjustment of its predictions (:mod:`ltlib.methods.logit_adjustment`).

``w_c / ||w_c||^tau`` for every class row c, the bias untouched: tau = 0 is the model as trained, tau = 1 the
L2-normalised rows (Kang et al.'s tau-norm; weight balancing's demo uses tau = 1.9). A sweep evaluates every tau from
features extracted once, and tau is chosen on the validation split. Above the run layer: it takes a finished
:class:`~ltlib.runs.experiment.Run` and its data.
"""
from __future__ import annotations

import copy
from numbers import Real

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..data.datasets import LongTailData
from ..data.longtail import class_groups
from ..methods.logit_adjustment import adjust_logits
from ..runs.evaluate import accuracy_from_logits, logit_scale, predict_features, predict_logits
from ..runs.experiment import Run
from ..runs.setup import eval_options


def _check_tau(tau: object) -> float:
    if isinstance(tau, bool) or not isinstance(tau, Real) or not np.isfinite(tau) or tau < 0:
        raise ConfigError(f"tau must be a number >= 0 (0 = unchanged, 1 = L2-normalised rows), got {tau!r}")
    return float(tau)


def tau_normalized_weight(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """Rows divided by their norm to the power tau: tau = 1 is L2 normalisation, tau = 0 the identity."""
    tau = _check_tau(tau)
    return weight / weight.norm(dim=1, keepdim=True).pow(tau)


def tau_normalize(model: nn.Module, tau: float) -> nn.Module:
    """A copy of ``model`` whose linear classifier rows are tau-normalised; the bias is left as it is."""
    if not isinstance(model.classifier, nn.Linear):
        raise ConfigError("tau-normalisation needs a linear classifier (NormedLinear rows are normalised already)")
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.classifier.weight.copy_(tau_normalized_weight(model.classifier.weight, tau))
    return out


def tau_sweep(run_: Run, data: LongTailData, taus=np.round(np.arange(0, 2.01, 0.1), 2), *,
              device: torch.device | str | None = None) -> pd.DataFrame:
    """Overall / many / medium / few on val and test for each tau, from features extracted once."""
    taus = [_check_tau(t) for t in taus]
    cfg = run_.config
    model = run_.model
    if not isinstance(model.classifier, nn.Linear):
        raise ConfigError("tau-normalisation needs a linear classifier")
    kw = dict(eval_options(cfg, data), device=device)
    splits = _splits(data)
    feats = {name: predict_features(model, split.images, **kw) for name, split in splits.items()}
    weight, bias = model.classifier.weight.detach().float(), model.classifier.bias.detach().float()

    def logits_at(tau: float) -> dict:
        w = tau_normalized_weight(weight.to(next(iter(feats.values())).device), tau)
        return {name: F.linear(f, w, bias.to(w.device)) for name, f in feats.items()}

    return _sweep(taus, logits_at, splits, data, cfg.base.group_scheme)


def _splits(data: LongTailData) -> dict:
    """The splits a sweep evaluates: validation (when there is one) and test."""
    return {"test": data.test} if data.val is None else {"val": data.val, "test": data.test}


def _sweep(taus, logits_at, splits: dict, data: LongTailData, group_scheme: str) -> pd.DataFrame:
    """One row per tau and split: the accuracies of ``logits_at(tau)[split]`` (overall, groups, per class)."""
    groups = class_groups(data.class_counts, group_scheme)
    rows = []
    for tau in taus:
        logits = logits_at(tau)
        for name, split in splits.items():
            res = accuracy_from_logits(logits[name], split.labels, data.num_classes)
            rows.append({"tau": tau, "split": name, **{k: v for k, v in res.summary(groups).items()
                                                       if k != "per_class"}, "per_class": res.per_class.tolist()})
    return pd.DataFrame(rows)


def tau_result(run_: Run, sweep: pd.DataFrame, tau: float) -> dict:
    """One tau of a sweep as a result row (test split), like a run's: seed, groups, per-class accuracy and
    the classifier norms after normalisation (``||w_c|| ** (1 - tau)``)."""
    norms = np.asarray(run_.metrics["classifier_norms"]) ** (1 - tau)
    return {**sweep_result(run_, sweep, tau), "classifier_norms": norms.tolist()}


def sweep_result(run_: Run, sweep: pd.DataFrame, tau: float) -> dict:
    """One tau of a sweep (:func:`tau_sweep`, :func:`logit_adjustment_sweep`) as a result row of the test split,
    like a run's: name, seed, tau, overall / many / medium / few and the per-class accuracy."""
    row = sweep[(sweep["split"] == "test") & np.isclose(sweep["tau"], tau)]
    if row.empty:
        raise ValueError(f"tau {tau} is not in the sweep")
    r = row.iloc[0]
    return {"name": f"tau={tau:g}", "seed": run_.config.seed, "tau": tau, "overall": r["overall"], "many": r["many"],
            "medium": r["medium"], "few": r["few"], "per_class": r["per_class"]}


def logit_adjustment_sweep(run_: Run, data: LongTailData, taus=np.round(np.arange(0, 2.01, 0.1), 2), *,
                           device: torch.device | str | None = None) -> pd.DataFrame:
    """Post-hoc logit adjustment (:func:`ltlib.methods.logit_adjustment.adjust_logits`) of a trained model at each
    tau: overall / many / medium / few on val and test, from logits computed once. The prior is the training
    counts'; a cosine head's logits are scaled by its s first, as the softmax sees them."""
    cfg = run_.config
    kw = dict(eval_options(cfg, data), device=device)
    splits = _splits(data)
    scale = logit_scale(cfg)
    logits = {name: predict_logits(run_.model, split.images, **kw) * scale for name, split in splits.items()}
    counts = data.class_counts.tolist()

    def logits_at(tau: float) -> dict:         # each tau is checked by log_prior
        return {name: adjust_logits(z, counts, tau) for name, z in logits.items()}

    return _sweep(list(taus), logits_at, splits, data, cfg.base.group_scheme)


def best_tau(sweep: pd.DataFrame, split: str = "val") -> float:
    """The tau with the best overall accuracy on ``split`` (the smallest such tau on a tie)."""
    part = sweep[sweep["split"] == split]
    if part.empty:
        raise ValueError(f"the sweep has no {split!r} split; choose tau on 'val' (needs a validation split)")
    return float(part.sort_values(["overall", "tau"], ascending=[False, True]).iloc[0]["tau"])
