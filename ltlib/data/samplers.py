"""Samplers turn class counts into one epoch's index tensor, drawn on the device.

Contract: ``sampler.epoch_indices(generator)`` is called once per epoch with a generator that is
seeded from (seed, epoch), and returns a 1-D int64 tensor of positions into the training set on the
sampler's device, as many as the training set has images.
"""
from __future__ import annotations

from typing import Protocol

import torch

from ..core.registry import Registry


class Sampler(Protocol):
    def epoch_indices(self, generator: torch.Generator) -> torch.Tensor: ...


class InstanceSampler:
    """Every training image once per epoch, in a random order (a plain shuffle)."""

    def __init__(self, labels: torch.Tensor) -> None:
        self.num_samples = len(labels)
        self.device = labels.device

    def epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(self.num_samples, generator=generator, device=self.device)


class ClassPowerSampler:
    """Draws N images with replacement, each with probability proportional to ``n_c ** -alpha`` for its class c.

    A class is then drawn with probability proportional to ``n_c ** (1 - alpha)``: ``alpha = 1`` gives
    class-balanced sampling (every class equally often), ``alpha = 0.5`` square-root sampling, and
    ``alpha = 0`` the instance distribution. One ``torch.multinomial`` on the device per epoch.
    """

    def __init__(self, labels: torch.Tensor, alpha: float) -> None:
        counts = torch.bincount(labels).double()
        self.weights = counts[labels].pow(-alpha).float()
        self.num_samples = len(labels)

    def epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)


class ClassAwareSampler:
    """CC-SAM's (and Shen et al.'s) class-aware sampler: classes are visited in a cyclic order that is
    reshuffled after each full cycle, and each visit emits the next index of that class's own cyclic list,
    reshuffled each time it is exhausted. Over C * k draws every class appears exactly k times.

    The reference keeps its cycles running across epochs; here each epoch starts fresh cycles from the
    epoch's seeded generator, so an epoch replays exactly after a resume.
    """

    def __init__(self, labels: torch.Tensor) -> None:
        self.num_samples = len(labels)
        self.device = labels.device
        self.classes = torch.unique(labels)
        self.members = [torch.nonzero(labels == c).flatten() for c in self.classes]

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` training-set positions, class-aware."""
        c = len(self.classes)
        cycles = -(-n // c)
        order = torch.argsort(torch.rand(cycles, c, generator=generator, device=self.device), dim=1)
        class_seq = order.flatten()[:n]                                   # indices into self.classes
        out = torch.empty(n, dtype=torch.long, device=self.device)
        for k, members in enumerate(self.members):
            slots = torch.nonzero(class_seq == k).flatten()
            if len(slots) == 0:
                continue
            rounds = -(-len(slots) // len(members))
            perms = torch.argsort(torch.rand(rounds, len(members), generator=generator, device=self.device), dim=1)
            out[slots] = members[perms.flatten()[:len(slots)]]
        return out

    def epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        return self.draw(self.num_samples, generator)


SAMPLERS: Registry = Registry("sampler")
SAMPLERS.add("instance", InstanceSampler, "instance-balanced: each image once per epoch, shuffled")
SAMPLERS.add("class_balanced", lambda labels: ClassPowerSampler(labels, 1.0),
             "class-balanced: classes equally often, images drawn with replacement (cRT)")
SAMPLERS.add("class_aware", ClassAwareSampler,
             "class-aware (CC-SAM stage 2): classes cycled in shuffled rounds, each class's images cycled in turn")
SAMPLERS.add("sqrt", lambda labels: ClassPowerSampler(labels, 0.5),
             "square-root: class c drawn with probability proportional to sqrt(n_c), with replacement")


def build_sampler(name: str, labels: torch.Tensor) -> Sampler:
    return SAMPLERS.get(name)(labels)
