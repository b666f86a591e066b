"""Deterministic training on CUDA, where the user asks for it (``RunConfig.deterministic``).

On the CPU ltlib's runs are already bit-reproducible. On CUDA a few kernels add in whatever order threads
finish: torch's deterministic mode picks ordered kernels where it has them and raises where it has none. Two
that ltlib uses have none: the backward of the global average pool (``adaptive_avg_pool2d``) and ``bincount``
with weights. While the mode is on, :func:`global_average_pool` and :func:`weighted_bincount` compute the same
sums with ops that have (a mean over the spatial dims, ``index_add_``); with the mode off, they call the usual ops,
so every default run keeps its numbers bit for bit.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F


@contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Within the block, torch uses deterministic algorithms (raising on an op that has none), cuDNN picks
    deterministic convolutions and does not benchmark, and cuBLAS gets the fixed workspace it needs
    (``CUBLAS_WORKSPACE_CONFIG``, unless set). Everything is restored afterwards. ``enabled=False`` changes nothing."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    had_workspace = "CUBLAS_WORKSPACE_CONFIG" in os.environ
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
        if not had_workspace:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def global_average_pool(x: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """The mean of each channel over its feature map: ``(N, C)``, or ``(N, C, 1, 1)`` with ``keepdim``."""
    if torch.are_deterministic_algorithms_enabled():
        return x.mean((2, 3), keepdim=keepdim)
    pooled = F.adaptive_avg_pool2d(x, 1)
    return pooled if keepdim else pooled.flatten(1)


class GlobalAveragePool(nn.Module):
    """:func:`global_average_pool` as a module, keeping the dims (in place of torchvision's ``avgpool``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_average_pool(x, keepdim=True)


def weighted_bincount(index: torch.Tensor, weights: torch.Tensor, minlength: int) -> torch.Tensor:
    """``torch.bincount(index, weights, minlength)``: the sum of the weights that fall in each bin."""
    if torch.are_deterministic_algorithms_enabled():
        size = max(minlength, int(index.max()) + 1 if len(index) else 0)
        return torch.zeros(size, dtype=weights.dtype, device=weights.device).index_add_(0, index, weights)
    return torch.bincount(index, weights=weights, minlength=minlength)
