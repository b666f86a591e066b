"""Which weights to perturb, random and ascent directions in weight space, and moving the weights along them.

Directions are normalised the way the loss-landscape literature does (Li et al., NeurIPS 2018): per
*filter*, each slice of the direction gets the norm of the matching slice of the weights, so a step of
size sigma moves every filter by sigma times its own norm. That makes models with differently scaled
layers (weight decay, BatchNorm's scale invariance) comparable. A filter is an output unit: dim 0 of a
conv or linear weight, dim 1 of the cosine head's ``in x out`` weight.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from ...core.errors import ConfigError
from ...core.registry import Registry
from ...models.heads import NormedLinear


@dataclass(frozen=True)
class Param:
    """A parameter the analysis perturbs, with the dimension that indexes its filters."""

    name: str
    tensor: nn.Parameter
    filter_dim: int


PARAM_SETS: Registry[None] = Registry("parameter set")
PARAM_SETS.add("weights", None, "conv and linear weights; biases and BN are left alone, as Li et al. do")
PARAM_SETS.add("all", None, "every trainable parameter (biases and BN affine included)")
PARAM_SETS.add("classifier", None, "the classifier only")
PARAM_SETS.add("backbone", None, "every weight (dim > 1) except the classifier's")

NORMS: Registry[None] = Registry("direction normalisation")
NORMS.add("filter", None, "each filter scaled to the norm of its weights (Li et al.): sigma is relative")
NORMS.add("layer", None, "each tensor scaled to the norm of its weights: sigma is relative")
NORMS.add("none", None, "N(0, 1) per weight: sigma is the absolute standard deviation")

Direction = list[torch.Tensor]


def select_params(model: nn.Module, which: str = "weights") -> list[Param]:
    """The parameters of ``model`` in the named set (see ``PARAM_SETS``)."""
    PARAM_SETS.get(which)
    classifier = getattr(model, "classifier", None)
    head = {id(p) for p in classifier.parameters()} if classifier is not None else set()
    normed = {id(m.weight) for m in model.modules() if isinstance(m, NormedLinear)}
    chosen = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        in_head = id(p) in head
        keep = {"all": True, "weights": p.dim() > 1, "classifier": in_head,
                "backbone": p.dim() > 1 and not in_head}[which]
        if keep:
            chosen.append(Param(name, p, 1 if id(p) in normed else 0))
    if not chosen:
        raise ConfigError(f"the parameter set {which!r} is empty for {type(model).__name__}")
    return chosen


def filter_norms(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Per-filter norms of ``t`` along ``dim``, shaped to broadcast against ``t``."""
    if t.dim() <= 1:
        return t.norm().reshape([1] * max(t.dim(), 1))
    other = [d for d in range(t.dim()) if d != dim]
    return torch.linalg.vector_norm(t, dim=other, keepdim=True)


def normalize_direction(direction: Sequence[torch.Tensor], params: Sequence[Param], norm: str = "filter") -> Direction:
    """Scale ``direction`` to the weights: per filter, per tensor, or not at all (``NORMS``)."""
    NORMS.get(norm)
    out = []
    for d, p in zip(direction, params, strict=True):
        w = p.tensor.detach()
        if norm == "filter":
            d = d * (filter_norms(w, p.filter_dim) / (filter_norms(d, p.filter_dim) + 1e-10))
        elif norm == "layer":
            d = d * (w.norm() / (d.norm() + 1e-10))
        out.append(d)
    return out


def random_direction(params: Sequence[Param], generator: torch.Generator, norm: str = "filter") -> Direction:
    """A Gaussian direction, drawn on the CPU from ``generator`` (so any device gives the same draw), normalised."""
    raw = [torch.randn(p.tensor.shape, generator=generator, dtype=torch.float32).to(p.tensor) for p in params]
    return normalize_direction(raw, params, norm)


def direction_norm(direction: Sequence[torch.Tensor]) -> float:
    return float(torch.sqrt(sum(d.double().pow(2).sum() for d in direction)))


@contextmanager
def displaced(params: Sequence[Param], directions: Sequence[Sequence[torch.Tensor]],
              coefficients: Sequence[float]) -> Iterator[None]:
    """Within the block the weights are ``w + sum_k c_k d_k``; afterwards they are the saved copies, bit for bit."""
    saved = [p.tensor.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for c, direction in zip(coefficients, directions, strict=True):
                if c == 0:
                    continue
                for p, d in zip(params, direction, strict=True):
                    p.tensor.add_(d, alpha=float(c))
        yield
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.tensor.copy_(w)
