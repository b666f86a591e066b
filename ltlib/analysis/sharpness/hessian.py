"""Curvature from Hessian-vector products: the top eigenvalue (power iteration) and the trace (Hutchinson).

Both take an ``hvp`` function (a list of tensors in, H times it out) so they work on any loss: a test's
quadratic, or a model's loss over a fixed set of images (:func:`ltlib.analysis.sharpness.probe.model_hvp`).
Each product is one double-backward pass; nothing ever forms the Hessian.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


Vector = list[torch.Tensor]
HVP = Callable[[Vector], Vector]


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True)))


def _scale(a: Sequence[torch.Tensor], s: float) -> Vector:
    return [x * s for x in a]


def closure_hvp(loss: Callable[[], torch.Tensor], params: Sequence[torch.Tensor]) -> HVP:
    """Hessian-vector products of ``loss()`` at the current ``params``.

    The gradient graph is built once and kept, so each product costs one backward through it.
    """
    grads = torch.autograd.grad(loss(), list(params), create_graph=True)

    def hvp(v: Vector) -> Vector:
        out = torch.autograd.grad(grads, list(params), grad_outputs=list(v), retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(out, params)]
    return hvp


@dataclass(frozen=True)
class Eigen:
    """The eigenvalue of largest magnitude, its unit eigenvector, and how the iteration went."""

    value: float
    vector: Vector
    iterations: int
    converged: bool


def top_eigenvalue(hvp: HVP, like: Sequence[torch.Tensor], *, iters: int = 20, tol: float = 1e-3,
                   generator: torch.Generator | None = None) -> Eigen:
    """Power iteration from a seeded Gaussian start; stops when the Rayleigh quotient changes by < ``tol``
    relative. It finds the eigenvalue of largest *magnitude* (at a minimum, the largest one)."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    v = [torch.randn(t.shape, generator=generator, dtype=torch.float32).to(t) for t in like]
    v = _scale(v, 1 / math.sqrt(_dot(v, v)))
    value, converged, i = float("nan"), False, 0
    for i in range(1, iters + 1):
        hv = hvp(v)
        new = _dot(v, hv)
        norm = math.sqrt(_dot(hv, hv))
        if norm == 0:
            return Eigen(0.0, v, i, True)
        v = _scale(hv, 1 / norm)
        if i > 1 and abs(new - value) <= tol * (abs(value) + 1e-12):
            value, converged = new, True
            break
        value = new
    return Eigen(value, v, i, converged)


@dataclass(frozen=True)
class Trace:
    """Hutchinson's estimate of tr(H): the mean of v^T H v over Rademacher vectors, and its standard error."""

    value: float
    std_error: float
    samples: int


def hutchinson_trace(hvp: HVP, like: Sequence[torch.Tensor], *, samples: int = 20,
                     generator: torch.Generator | None = None) -> Trace:
    """tr(H) = E[v^T H v] for v with independent +-1 entries; unbiased, with a standard error over ``samples``."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    values = []
    for _ in range(samples):
        v = [(torch.randint(0, 2, t.shape, generator=generator) * 2 - 1).to(t) for t in like]
        values.append(_dot(v, hvp(v)))
    mean = sum(values) / samples
    var = sum((x - mean) ** 2 for x in values) / (samples - 1) if samples > 1 else float("nan")
    return Trace(mean, math.sqrt(var / samples), samples)
