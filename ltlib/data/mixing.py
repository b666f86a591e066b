"""Mixing rules turn a batch into ``images, targets``; the targets may carry two label sets.

A rule is the loader's last stage, after augmentation and normalisation. ``"none"`` leaves the batch
and its integer labels alone (and draws nothing, so runs without mixing are unchanged). ``"mixup"``
mixes each image with a permuted partner, ``lam * x + (1 - lam) * x[perm]``, with one
``lam ~ Beta(alpha, alpha)`` per batch, as CC-SAM's released code (and Zhang et al.'s mixup) does.
``"cmo"`` pastes a box from a minority-weighted second batch (CMO, algorithms.md §5.2). Losses see mixed
targets through :func:`ltlib.core.targets.mixed_losses`.

A rule may define ``start_epoch(loader, epoch)``; the loader calls it before each epoch (CMO draws its
minority stream there, from its own seeded generator).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core.env import derived_seed
from ..core.errors import ConfigError
from ..core.registry import Registry
from ..core.settings import Settings
from ..core.targets import MixedTargets, Targets
from .samplers import ClassPowerSampler


_CMO_STREAM = 3


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
        weight = torch.full((), lam, dtype=torch.float32, device=images.device)   # a fill kernel, not a copy
        return mixed, MixedTargets(labels, labels[perm], weight)


def cmo_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """CMO's (CutMix's) ``rand_bbox``: side ``int(H sqrt(1 - lam))``, a uniform integer centre, half-widths
    floored, clipped to the image. Returns (row0, row1, col0, col1)."""
    cut = np.sqrt(1.0 - lam)
    h, w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    return (int(np.clip(cy - h // 2, 0, height)), int(np.clip(cy + h // 2, 0, height)),
            int(np.clip(cx - w // 2, 0, width)), int(np.clip(cx + w // 2, 0, width)))


def cmo_label_weight(box: tuple[int, int, int, int], height: int, width: int) -> float:
    """CMO's lam': the share of the image the pasted box leaves to the background, from the clipped box."""
    r0, r1, c0, c1 = box
    return 1.0 - (r1 - r0) * (c1 - c0) / (height * width)


class CMO:
    """Context-rich minority oversampling: on a batch from the usual stream (the background), paste one box
    cut from a batch of the minority stream (classes drawn with weight n_c^(1 - alpha), with replacement)
    at the same place. One lam ~ Beta(beta, beta) and one box per batch; applied with probability ``prob``
    per batch, and only in epochs ``start < e < epochs - end``. The label weight lam' = 1 - box area / image
    area (recomputed from the clipped box) goes to the background label, 1 - lam' to the patch's.
    """

    def __init__(self, prob: float = 0.5, beta: float = 1.0, alpha: float = 1.0, epochs: int = 200,
                 start: int = 3, end: int = 3) -> None:
        if not 0 <= prob <= 1:
            raise ConfigError(f"CMO prob must be in [0, 1] (the chance a batch is mixed), got {prob}")
        if not alpha >= 0:
            raise ConfigError(f"CMO alpha must be >= 0 (0 = instance-balanced patches, 1 = class-balanced), got {alpha}")
        if not beta > 0:
            raise ConfigError(f"CMO beta must be > 0, got {beta}")
        self.prob, self.beta, self.alpha = prob, beta, alpha
        self.epochs, self.start, self.end = epochs, start, end
        self.active = False

    def is_active(self, epoch: int) -> bool:
        return self.start < epoch < self.epochs - self.end

    def start_epoch(self, loader, epoch: int) -> None:
        """Draw this epoch's minority stream: N indices with replacement, on the device."""
        self.loader, self.active = loader, self.is_active(epoch)
        if not self.active:
            return
        gen = torch.Generator(device=loader.device).manual_seed(derived_seed(loader.seed, epoch, _CMO_STREAM))
        self.order = ClassPowerSampler(loader.labels, self.alpha).epoch_indices(gen)
        self.augment = gen
        self.position = 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator,
                 generator: torch.Generator) -> tuple[torch.Tensor, Targets]:
        if not self.active:
            return images, labels
        n = len(labels)
        if self.position + n > len(self.order):    # the reference restarts its patch loader when exhausted
            self.position = 0
        idx = self.order[self.position:self.position + n]
        self.position += n
        if rng.random() >= self.prob:
            return images, labels
        lam = float(rng.beta(self.beta, self.beta))
        r0, r1, c0, c1 = cmo_box(images.shape[2], images.shape[3], lam, rng)
        patch = self.loader.fetch(idx, self.augment)
        images[:, :, r0:r1, c0:c1] = patch[:, :, r0:r1, c0:c1]
        kept = cmo_label_weight((r0, r1, c0, c1), images.shape[2], images.shape[3])
        weight = torch.full((), kept, dtype=torch.float32, device=images.device)
        return images, MixedTargets(labels, self.loader.labels[idx], weight)


@dataclass(frozen=True)
class MixupSettings(Settings):
    """Input mixup's field of a run config, hashed when ``mixing="mixup"``."""

    mixup_alpha: float = 1.0

    @classmethod
    def check_block(cls, config) -> None:
        if not config.mixup_alpha > 0 or not math.isfinite(config.mixup_alpha):
            raise ConfigError(f"RunConfig.mixup_alpha: Beta(alpha, alpha) needs alpha > 0, got {config.mixup_alpha!r}")

    @classmethod
    def used(cls, config) -> bool:
        return config.mixing == "mixup"

    @classmethod
    def options(cls, config) -> dict:
        return {"alpha": config.mixup_alpha}


@dataclass(frozen=True)
class CMOSettings(Settings):
    """CMO's fields of a run config (algorithms.md §5.2): a minority patch on p of the batches, in epochs
    start < e < epochs - end. Hashed when ``mixing="cmo"``."""

    cmo_prob: float = 0.5
    cmo_beta: float = 1.0               # the box's lam ~ Beta(beta, beta)
    cmo_alpha: float = 1.0              # the patch stream draws class c with weight n_c^(1 - alpha)
    cmo_start: int = 3
    cmo_end: int = 3

    @classmethod
    def check_block(cls, config) -> None:
        if not 0 <= config.cmo_prob <= 1:
            raise ConfigError(f"RunConfig.cmo_prob: CMO is applied to a batch with probability p, so p must be in "
                              f"[0, 1]; got {config.cmo_prob!r}")
        if not config.cmo_alpha >= 0:
            raise ConfigError(f"RunConfig.cmo_alpha: the minority stream weighs class c by 1 / n_c^alpha; alpha must "
                              f"be >= 0 (0 = instance-balanced, 1 = class-balanced), got {config.cmo_alpha!r}")
        if not config.cmo_beta > 0 or config.cmo_start < 0 or config.cmo_end < 0:
            raise ConfigError("RunConfig: cmo_beta must be > 0 and cmo_start, cmo_end >= 0")
        if config.data_path == "stream" and config.mixing == "cmo":
            raise ConfigError("RunConfig.data_path='stream' cannot feed CMO yet (it fetches its minority patches by "
                              "index): use data_path='memory', with a smaller image_size if the set does not fit")

    @classmethod
    def used(cls, config) -> bool:
        return config.mixing == "cmo"

    @classmethod
    def options(cls, config) -> dict:
        return dict(prob=config.cmo_prob, beta=config.cmo_beta, alpha=config.cmo_alpha, epochs=config.epochs,
                    start=config.cmo_start, end=config.cmo_end)


# settings: the run-config block a rule is built from (its options()); shown: the fields a caption prints
MIXINGS: Registry = Registry("mixing")
MIXINGS.add("none", lambda **_: NoMixing(), "no mixing: images and integer labels as they are")
MIXINGS.add("mixup", Mixup, "input mixup: one lam ~ Beta(alpha, alpha) per batch, a random partner per image",
            settings=MixupSettings, shown=("mixup_alpha",))
MIXINGS.add("cmo", CMO, "CMO: a box from a minority-weighted batch pasted on p of the batches, labels mixed by area",
            settings=CMOSettings)


def build_mixing(name: str, **options) -> NoMixing | Mixup | CMO:
    """The mixing rule ``name`` with its options (mixup: alpha; CMO: prob, beta, alpha, epochs, start, end)."""
    return MIXINGS.get(name)(**options)
