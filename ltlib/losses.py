"""Losses return per-sample values (reduction none) so step strategies can group samples.

Each loss is built from the training class counts (``class_counts``), which later losses (LDAM,
Balanced Softmax, class-balanced weights) need. Logits are promoted to float32 first, so the loss
is computed in fp32 under bf16 autocast.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import Registry


class CrossEntropy(nn.Module):
    """Plain cross-entropy, one value per sample."""

    def __init__(self, class_counts: Sequence[int] | None = None) -> None:
        super().__init__()

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, reduction="none")


LOSSES: Registry = Registry("loss")
LOSSES.add("ce", CrossEntropy, "cross-entropy")


def build_loss(name: str, class_counts: Sequence[int]) -> nn.Module:
    return LOSSES.get(name)(class_counts)
