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


def effective_number_weights(class_counts: Sequence[int], beta: float) -> torch.Tensor:
    """Cui et al.'s class weights (1 - beta) / (1 - beta^n_c), normalised to sum to C (algorithms.md §1.6)."""
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    weights = (1.0 - beta) / (1.0 - beta ** counts)
    return (weights / weights.sum() * len(counts)).float()


class ClassBalancedBCE(nn.Module):
    """Weight balancing's "class-balanced loss" (CB_loss, softmax variant), exactly as its code runs it.

    A *binary* cross-entropy on the softmax probabilities against one-hot targets, each sample weighted
    by its target class's effective-number weight, averaged over all B x C entries (algorithms.md §2.4):
    ``1/(B C) sum_i w_{y_i} sum_c BCE(p_ic, y_ic)``. Per sample it returns ``w_{y_i} sum_c BCE / C``, so
    the batch mean is the reference value. Its scale is about 1/C of weighted CE, which is why weight
    balancing pairs it with lr 0.01 and weight decay 0.1.
    """

    def __init__(self, class_counts: Sequence[int], beta: float = 0.9999) -> None:
        super().__init__()
        self.register_buffer("weights", effective_number_weights(class_counts, beta))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        probs = logits.float().softmax(dim=1)
        onehot = F.one_hot(labels, probs.shape[1]).float()
        bce = F.binary_cross_entropy(probs, onehot, reduction="none")   # B x C, log clamped at -100 as torch does
        return self.weights.to(logits.device)[labels] * bce.mean(dim=1)


LOSSES: Registry = Registry("loss")
LOSSES.add("ce", CrossEntropy, "cross-entropy")
LOSSES.add("cb_bce", ClassBalancedBCE,
           "weight balancing's class-balanced loss: BCE on softmax probabilities, effective-number weights")


def build_loss(name: str, class_counts: Sequence[int], **kwargs) -> nn.Module:
    return LOSSES.get(name)(class_counts, **kwargs)
