"""The analyses of one trained model: random-perturbation spread, per-group Hessian curvature, and
1-D / 2-D loss landscapes. Each returns a pandas table (or arrays) that ``ltlib.report.plots`` draws.

All of them run on a :class:`~ltlib.analysis.sharpness.probe.Probe` in eval mode, draw their randomness from a
seeded CPU generator (the same numbers on any device), and put the weights back bit for bit.
"""
from __future__ import annotations

import time
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ...core.errors import ConfigError
from ...core.progress import track
from ...data.longtail import GROUP_NAMES
from ...runs.evaluate import eval_mode
from .directions import Direction, Param, displaced, filter_norms, normalize_direction, random_direction, select_params
from .hessian import hutchinson_trace, top_eigenvalue
from .probe import Probe, loss_gradient, model_hvp, probe_outputs, scope_means


GROUP_SCOPES = ("overall", *GROUP_NAMES)


def random_directions(model: nn.Module, count: int, *, seed: int = 0, norm: str = "filter",
                      params: str = "weights") -> list[Direction]:
    """``count`` Gaussian directions over the named parameter set, normalised (``norm``), from ``seed``."""
    chosen = select_params(model, params)
    gen = torch.Generator().manual_seed(seed)
    return [random_direction(chosen, gen, norm) for _ in range(count)]


def ascent_direction(model: nn.Module, probe: Probe, *, classes: Sequence[int] | None = None,
                     norm: str = "filter", params: str = "weights") -> Direction:
    """The direction SAM climbs: the gradient of the probe loss (``classes=None``), or, as ImbSAM does, of
    the loss of the given (tail) classes only. Normalised like a random direction, so the axes compare."""
    if classes is not None:
        mask = probe.class_mask(classes)
        if not bool(mask.any()):
            raise ConfigError(f"the probe has no images of classes {list(classes)}")
        probe = probe.subset(mask)
    chosen = select_params(model, params)
    with eval_mode(model):
        grad = loss_gradient(model, probe, chosen)
    return normalize_direction(grad, chosen, norm)


def _rows(losses: torch.Tensor, correct: torch.Tensor, probe: Probe, **keys) -> list[dict]:
    loss, acc = scope_means(losses, probe), scope_means(correct, probe)
    return [{**keys, "scope": s, "loss": loss[s], "accuracy": 100 * acc[s]} for s in loss]


def perturbation_spread(model: nn.Module, probe: Probe, sigmas: Sequence[float], *, draws: int = 5,
                        seed: int = 0, norm: str = "filter", params: str = "weights",
                        progress: bool = False) -> pd.DataFrame:
    """Loss and accuracy after ``w + sigma * d`` for ``draws`` random directions d (the same d at every
    sigma), per scope, with the change from the unperturbed model. The CC-SAM poster's protocol is
    ``draws=5``: the spread of the loss over the draws says how sharp the minimum is."""
    if draws < 1:
        raise ConfigError(f"draws must be >= 1, got {draws}")
    if any(not s >= 0 for s in sigmas):
        raise ConfigError(f"sigmas must be >= 0, got {list(sigmas)}")
    chosen = select_params(model, params)
    directions = random_directions(model, draws, seed=seed, norm=norm, params=params)
    clean = {r["scope"]: r for r in _rows(*probe_outputs(model, probe), probe)}
    rows = []
    work = [(s, k) for s in sigmas for k in range(draws)]
    for sigma, k in track(work, "random perturbations", enabled=progress):
        with displaced(chosen, [directions[k]], [sigma]):
            rows += _rows(*probe_outputs(model, probe), probe, sigma=float(sigma), draw=k)
    table = pd.DataFrame(rows)
    table["loss_increase"] = table["loss"] - table["scope"].map(lambda s: clean[s]["loss"])
    table["accuracy_drop"] = table["scope"].map(lambda s: clean[s]["accuracy"]) - table["accuracy"]
    table.attrs.update(norm=norm, params=params, draws=draws, seed=seed, probe=probe.description)
    return table


def spread_summary(spread: pd.DataFrame, scopes: Sequence[str] = GROUP_SCOPES) -> pd.DataFrame:
    """Per sigma and scope: the mean loss, its standard deviation over the draws (the spread), the mean
    loss increase and the mean accuracy drop."""
    part = spread[spread["scope"].isin(scopes)]
    out = part.groupby(["sigma", "scope"], sort=False).agg(
        loss=("loss", "mean"), spread=("loss", "std"), loss_increase=("loss_increase", "mean"),
        loss_increase_std=("loss_increase", "std"), accuracy_drop=("accuracy_drop", "mean"))
    return out.reset_index()


HESSIAN_SCALES = ("none", "filter")


def filter_scales(params: Sequence[Param]) -> list[torch.Tensor]:
    """Per weight, the RMS of its filter, ||w_f|| / sqrt(n_f): the coordinates of a filter-normalised
    perturbation. A unit Gaussian in these coordinates is a sigma = 1 filter-normalised direction on average."""
    out = []
    for p in params:
        w = p.tensor.detach()
        size = w.numel() / (w.shape[p.filter_dim] if w.dim() > 1 else 1)
        out.append((filter_norms(w, p.filter_dim) / size ** 0.5).expand_as(w))
    return out


def _scaled(hvp, scales):
    return lambda v: [d * h for d, h in zip(scales, hvp([d * x for d, x in zip(scales, v)]))]


def hessian_by_group(model: nn.Module, probe: Probe, *, scopes: Sequence[str] = GROUP_SCOPES,
                     max_images: int | None = 256, params: str = "weights", iters: int = 20, tol: float = 1e-3,
                     samples: int = 20, seed: int = 0, scale: str = "none", progress: bool = False) -> pd.DataFrame:
    """The top Hessian eigenvalue and the Hutchinson trace of the mean loss of each scope (the whole probe,
    a group, or a class by name), on at most ``max_images`` of its images (a seeded, class-stratified
    choice). Per-group curvature as in Saddle-LongTail: is the tail's loss sharper than the head's?

    ``scale="filter"`` measures D H D, with D the filter RMS of each weight (:func:`filter_scales`). Raw
    eigenvalues shrink as weights grow (BatchNorm makes most layers scale-invariant), so models with
    different weight norms do not compare; the scaled ones do, and 1/2 sigma^2 tr(D H D) is the expected
    loss increase of a filter-normalised random perturbation of size sigma, to second order.
    """
    if scale not in HESSIAN_SCALES:
        raise ConfigError(f"unknown Hessian scale {scale!r}: use one of {HESSIAN_SCALES}")
    chosen = select_params(model, params)
    tensors = [p.tensor for p in chosen]
    scales = filter_scales(chosen) if scale == "filter" else None
    masks = probe.scopes()
    unknown = [s for s in scopes if s not in masks]
    if unknown:
        raise ConfigError(f"unknown scope(s) {unknown}: use 'overall', a group {GROUP_NAMES} or a class name")
    rows = []
    with eval_mode(model):
        for scope in track(scopes, "Hessian", enabled=progress):
            if not bool(masks[scope].any()):
                rows.append({"scope": scope, "scale": scale, "images": 0})
                continue
            part = probe.subset(masks[scope], max_images, seed)
            start = time.perf_counter()
            hvp = model_hvp(model, part, chosen)
            if scales is not None:
                hvp = _scaled(hvp, scales)
            gen = torch.Generator().manual_seed(seed)
            eig = top_eigenvalue(hvp, tensors, iters=iters, tol=tol, generator=gen)
            trace = hutchinson_trace(hvp, tensors, samples=samples, generator=gen)
            rows.append({"scope": scope, "scale": scale, "images": len(part), "top_eigenvalue": eig.value,
                         "iterations": eig.iterations, "converged": eig.converged, "trace": trace.value,
                         "trace_se": trace.std_error, "seconds": time.perf_counter() - start})
    table = pd.DataFrame(rows)
    table.attrs.update(params=params, scale=scale, max_images=max_images, iters=iters, samples=samples, seed=seed,
                       probe=probe.description)
    return table


def landscape_1d(model: nn.Module, probe: Probe, directions: Mapping[str, Direction], alphas: Sequence[float], *,
                 params: str = "weights", progress: bool = False) -> pd.DataFrame:
    """Loss and accuracy at ``w + alpha * d`` along each named direction, per scope."""
    chosen = select_params(model, params)
    rows = []
    work = [(name, a) for name in directions for a in alphas]
    for name, alpha in track(work, "1-D landscape", enabled=progress):
        with displaced(chosen, [directions[name]], [alpha]):
            rows += _rows(*probe_outputs(model, probe), probe, direction=name, alpha=float(alpha))
    return pd.DataFrame(rows)


def landscape_2d(model: nn.Module, probe: Probe, d1: Direction, d2: Direction, alphas: Sequence[float],
                 betas: Sequence[float] | None = None, *, scope: str = "overall", params: str = "weights",
                 progress: bool = False) -> dict[str, np.ndarray]:
    """The loss and accuracy of one scope on the plane ``w + alpha * d1 + beta * d2``; grids are
    ``len(betas) x len(alphas)`` (rows beta), ready for ``contour(alphas, betas, loss)``."""
    betas = alphas if betas is None else betas
    chosen = select_params(model, params)
    mask = probe.scopes()[scope]
    loss = np.zeros((len(betas), len(alphas)))
    acc = np.zeros_like(loss)
    work = [(i, j) for i in range(len(betas)) for j in range(len(alphas))]
    for i, j in track(work, "2-D landscape", enabled=progress):
        with displaced(chosen, [d1, d2], [alphas[j], betas[i]]):
            losses, correct = probe_outputs(model, probe)
        loss[i, j], acc[i, j] = float(losses[mask].mean()), 100 * float(correct[mask].mean())
    return {"alphas": np.asarray(alphas, float), "betas": np.asarray(betas, float), "loss": loss, "accuracy": acc}
