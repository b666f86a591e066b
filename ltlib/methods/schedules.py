"""Learning-rate schedules as pure functions of (epoch, step): nothing to save, exact on resume.

Contract: ``schedule(epoch, step, steps_per_epoch)`` is called before every optimisation step with
the 0-based epoch and the 0-based step within it, and returns the learning rate for that step.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from ..core.errors import ConfigError
from ..core.registry import Registry


@dataclass(frozen=True)
class Cosine:
    """Linear warm-up over ``warmup_epochs`` (per step), then per-step cosine decay to 0."""

    lr: float
    epochs: int
    warmup_epochs: float = 0

    def __call__(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        t = epoch * steps_per_epoch + step
        warm = int(round(self.warmup_epochs * steps_per_epoch))
        total = self.epochs * steps_per_epoch
        if t < warm:
            return self.lr * (t + 1) / warm
        return self.lr * 0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, total - warm)))


@dataclass(frozen=True)
class CosineEpochStart:
    """Weight balancing's cosine: ``CosineAnnealingLR(T_max=epochs)`` stepped at the *start* of each
    epoch, so epoch e (0-based) runs at lr * (1 + cos(pi (e+1) / epochs)) / 2 and the last epoch at 0."""

    lr: float
    epochs: int
    warmup_epochs: float = 0

    def __call__(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        return self.lr * 0.5 * (1 + math.cos(math.pi * (epoch + 1) / self.epochs))


@dataclass(frozen=True)
class WarmupMultiStep:
    """LDAM-DRW / CMO: lr * t / warmup for t = epoch + 1 <= warmup, then x0.01 after 80% and x0.0001
    after 90% of the epochs (epochs 160 and 180 of 200); other milestones and factors by name below."""

    lr: float
    epochs: int
    warmup_epochs: float = 5
    milestones: tuple[float, float] = (0.8, 0.9)
    gammas: tuple[float, float] = (0.01, 0.0001)

    def __call__(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        t = epoch + 1
        first, second = (int(m * self.epochs) for m in self.milestones)
        if t <= self.warmup_epochs:
            return self.lr * t / self.warmup_epochs
        if t > second:
            return self.lr * self.gammas[1]
        if t > first:
            return self.lr * self.gammas[0]
        return self.lr


@dataclass(frozen=True)
class CCSAMWarmupMultiStep:
    """CC-SAM's ``WarmupMultiStepLR`` stepped before each epoch: epoch e runs at step t = e + 1 with a factor
    (1/3)(1 - t/w) + t/w while t < w (0.467, 0.6, 0.733, 0.867 for w = 5), then x0.1 from 80% (epoch 159 of
    200) and x0.01 from 90% (epoch 179): 10x drops, unlike LDAM-DRW's 100x (algorithms.md §3.3)."""

    lr: float
    epochs: int
    warmup_epochs: float = 5
    milestones: tuple[float, float] = (0.8, 0.9)

    def __call__(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        t = epoch + 1
        warm = (1 / 3) * (1 - t / self.warmup_epochs) + t / self.warmup_epochs if t < self.warmup_epochs else 1.0
        drops = sum(t >= int(m * self.epochs) for m in self.milestones)
        return self.lr * warm * 0.1 ** drops


@dataclass(frozen=True)
class PacoMultiStep:
    """CMO's ``paco_adjust_learning_rate`` (its 400-epoch recipe, after PaCo), per epoch e (0-based): lr (e+1) / w
    for e <= w, so epoch w runs at 1.1 lr for w = 10 (the code's quirk, kept); then lr, x0.1 after 80% and x0.01
    after 90% of the epochs (e > 320 and e > 360 of 400)."""

    lr: float
    epochs: int
    warmup_epochs: float = 10
    milestones: tuple[float, float] = (0.8, 0.9)

    def __call__(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        first, second = (int(m * self.epochs) for m in self.milestones)
        if self.warmup_epochs and epoch <= self.warmup_epochs:
            return self.lr / self.warmup_epochs * (epoch + 1)
        if epoch > second:
            return self.lr * 0.01
        if epoch > first:
            return self.lr * 0.1
        return self.lr


@dataclass(frozen=True)
class Constant:
    """The same learning rate throughout (CC-SAM's stage 2 on CIFAR: 0.01)."""

    lr: float
    epochs: int
    warmup_epochs: float = 0

    def __call__(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        return self.lr


SCHEDULES: Registry = Registry("schedule")
SCHEDULES.add("cosine", Cosine, "linear warm-up, then per-step cosine to 0")
SCHEDULES.add("cosine_epoch_start", CosineEpochStart,
              "weight balancing: per-epoch cosine stepped before each epoch (the last epoch runs at lr 0)")
SCHEDULES.add("warmup_multistep", WarmupMultiStep,
              "LDAM-DRW / CMO: warm-up, then x0.01 at 80% and x0.0001 at 90% of the epochs")
# CMO's imagenet_train.py / inat18_train.py adjust_learning_rate (100 epochs): the same warm-up, then x0.1 after
# epoch 60 and x0.01 after 80 (ImageNet-LT), or x0.1 after 75 and x0.01 after 160, never reached (iNaturalist)
SCHEDULES.add("imagenet_multistep", functools.partial(WarmupMultiStep, milestones=(0.6, 0.8), gammas=(0.1, 0.01)),
              "CMO's ImageNet-LT: warm-up, then x0.1 at 60% and x0.01 at 80% of the epochs (60 / 80 of 100)")
SCHEDULES.add("inat_multistep", functools.partial(WarmupMultiStep, milestones=(0.75, 1.6), gammas=(0.1, 0.01)),
              "CMO's iNaturalist-2018: warm-up, then x0.1 at 75% of the epochs; x0.01 at 160% (never, as coded)")
SCHEDULES.add("ccsam_multistep", CCSAMWarmupMultiStep,
              "CC-SAM stage 1: warm-up from 1/3 stepped per epoch, then x0.1 at 80% and x0.01 at 90% of the epochs")
SCHEDULES.add("paco_multistep", PacoMultiStep,
              "CMO's 400-epoch recipe: warm-up to (w+1)/w lr at epoch w, then x0.1 after 80% and x0.01 after 90%")
SCHEDULES.add("constant", Constant, "a constant learning rate (CC-SAM's stage 2 on CIFAR)")


def build_schedule(name: str, lr: float, epochs: int, warmup_epochs: float = 0):
    if warmup_epochs < 0 or warmup_epochs >= max(epochs, 1):
        raise ConfigError(f"warmup_epochs must be in [0, epochs), got {warmup_epochs} with {epochs} epochs")
    return SCHEDULES.get(name)(lr=lr, epochs=epochs, warmup_epochs=warmup_epochs)
