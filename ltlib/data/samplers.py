"""Samplers turn class counts into one epoch's index tensor, drawn on the device.

Contract: ``sampler.epoch_indices(generator)`` is called once per epoch with a generator that is
seeded from (seed, epoch), and returns a 1-D int64 tensor of positions into the training set on the
sampler's device. Class-balanced, square-root and minority-weighted samplers arrive with notebooks 02 and 05.
"""
from __future__ import annotations

from typing import Protocol

import torch

from ..registry import Registry


class Sampler(Protocol):
    def epoch_indices(self, generator: torch.Generator) -> torch.Tensor: ...


class InstanceSampler:
    """Every training image once per epoch, in a random order (a plain shuffle)."""

    def __init__(self, labels: torch.Tensor) -> None:
        self.num_samples = len(labels)
        self.device = labels.device

    def epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(self.num_samples, generator=generator, device=self.device)


SAMPLERS: Registry = Registry("sampler")
SAMPLERS.add("instance", InstanceSampler, "instance-balanced: each image once per epoch, shuffled")


def build_sampler(name: str, labels: torch.Tensor) -> Sampler:
    return SAMPLERS.get(name)(labels)
