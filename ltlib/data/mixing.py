"""Mixing rules turn a batch into ``images, targets``; the targets may carry two label sets.

A rule is the loader's last stage, after augmentation and normalisation. ``"none"`` leaves the batch
and its integer labels alone (and draws nothing, so runs without mixing are unchanged). ``"mixup"``
mixes each image with a permuted partner, ``lam * x + (1 - lam) * x[perm]``, with one
``lam ~ Beta(alpha, alpha)`` per batch, as CC-SAM's released code (and Zhang et al.'s mixup) does.
CMO (issue 8) will be a further rule. Losses see mixed targets through :func:`mixed_losses`.
"""
from __future__ import annotations

from typing import NamedTuple, Union

import numpy as np
import torch

from ..errors import ConfigError
from ..registry import Registry


class MixedTargets(NamedTuple):
    """Two label sets and the weight of the first: loss = w * loss(y) + (1 - w) * loss(other).

    ``weight`` is a 0-d tensor (one lam per batch) or a per-sample tensor. ``labels`` is the primary
    label set: the one training accuracy, ImbSAM's head / tail split and CC-SAM's class groups use.
    """

    labels: torch.Tensor
    other: torch.Tensor
    weight: torch.Tensor


Targets = Union[torch.Tensor, MixedTargets]


def primary_labels(targets: Targets) -> torch.Tensor:
    """The integer labels of a batch: the labels themselves, or the first set of mixed targets."""
    return targets.labels if isinstance(targets, MixedTargets) else targets


def mixed_losses(loss_fn, logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    """Per-sample losses against plain or mixed targets (the weighted sum of the two losses)."""
    if not isinstance(targets, MixedTargets):
        return loss_fn(logits, targets)
    w = targets.weight
    return w * loss_fn(logits, targets.labels) + (1 - w) * loss_fn(logits, targets.other)


class NoMixing:
    """The batch as it is."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator,
                 generator: torch.Generator) -> tuple[torch.Tensor, Targets]:
        return images, labels


class Mixup:
    """Input mixup with one ``lam ~ Beta(alpha, alpha)`` per batch and a random partner permutation."""

    def __init__(self, alpha: float = 1.0) -> None:
        if not alpha > 0:
            raise ConfigError(f"mixup alpha must be > 0 (Beta(alpha, alpha) draws the mixing weight), got {alpha}")
        self.alpha = alpha

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator,
                 generator: torch.Generator) -> tuple[torch.Tensor, Targets]:
        lam = float(rng.beta(self.alpha, self.alpha))   # drawn on the host: no device sync
        perm = torch.randperm(len(labels), generator=generator, device=images.device)
        mixed = images.mul(lam).add_(images[perm], alpha=1 - lam)
        weight = torch.tensor(lam, dtype=torch.float32, device=images.device)
        return mixed, MixedTargets(labels, labels[perm], weight)


MIXINGS: Registry = Registry("mixing")
MIXINGS.add("none", lambda alpha=1.0: NoMixing(), "no mixing: images and integer labels as they are")
MIXINGS.add("mixup", Mixup, "input mixup: one lam ~ Beta(alpha, alpha) per batch, a random partner per image")


def build_mixing(name: str, alpha: float = 1.0):
    return MIXINGS.get(name)(alpha=alpha)
