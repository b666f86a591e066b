"""What a batch's labels are: integer labels, or two label sets mixed by a weight (mixup, CMO).

A neutral module: the mixing rules (``ltlib.data.mixing``) build :class:`MixedTargets`, and the losses' consumers
(step strategies, the loop, DDP slicing) read them, without either side importing the other.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Union

import torch


class MixedTargets(NamedTuple):
    """Two label sets and the weight of the first: loss = w * loss(y) + (1 - w) * loss(other).

    ``weight`` is a 0-d tensor (one lam per batch) or a per-sample tensor. ``labels`` is the primary
    label set: the one training accuracy, ImbSAM's head / tail split and CC-SAM's class groups use.
    """

    labels: torch.Tensor
    other: torch.Tensor
    weight: torch.Tensor


Targets = Union[torch.Tensor, MixedTargets]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def primary_labels(targets: Targets) -> torch.Tensor:
    """The integer labels of a batch: the labels themselves, or the first set of mixed targets."""
    return targets.labels if isinstance(targets, MixedTargets) else targets


def target_tensors(targets: Targets) -> tuple[torch.Tensor, ...]:
    """The tensors a batch's targets are made of: the labels, or the three fields of mixed targets."""
    return tuple(targets) if isinstance(targets, MixedTargets) else (targets,)


def map_targets(fn: Callable[[torch.Tensor], torch.Tensor], targets: Targets) -> Targets:
    """``targets`` with ``fn`` applied to each of its tensors (a copy, a move to another device)."""
    return MixedTargets(*map(fn, targets)) if isinstance(targets, MixedTargets) else fn(targets)


def mixed_losses(loss_fn: LossFn, logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    """Per-sample losses against plain or mixed targets (the weighted sum of the two losses)."""
    if not isinstance(targets, MixedTargets):
        return loss_fn(logits, targets)
    w = targets.weight
    return w * loss_fn(logits, targets.labels) + (1 - w) * loss_fn(logits, targets.other)
