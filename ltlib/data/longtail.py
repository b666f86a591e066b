"""Long-tailed subsets exactly as the reference code builds them, class counts and shot groups.

``lt_counts`` follows LDAM-DRW / CMO / weight balancing / ImbSAM (algorithms.md §1.1):
``n_i = int(n_max * (1/IF) ** (i / (C - 1)))`` in float64, class 0 the head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from ..core.errors import ConfigError, DataError
from ..core.registry import Registry


IMBALANCE_PROFILES: Registry[None] = Registry("imbalance profile")
IMBALANCE_PROFILES.add("exp", None, "exponential: n_i = int(n_max * (1/IF)^(i/(C-1))) (LDAM-DRW, CMO, WB, ImbSAM)")
IMBALANCE_PROFILES.add("step", None, "step: the first C//2 classes get n_max, the rest int(n_max/IF)")

SUBSET_MODES: Registry[None] = Registry("subset mode")
SUBSET_MODES.add("first", None, "the first n_i images of each class in file order (weight balancing, ImbSAM)")
SUBSET_MODES.add("shuffle", None, "a seeded shuffle per class, then the first n_i (LDAM-DRW / CMO rand_number)")


def check_imbalance_factor(imbalance_factor: object) -> float:
    """Return the imbalance factor as a float, or raise a ConfigError saying why it is unusable. 1 is allowed: every
    class gets n_max images, the balanced control of notebook 01."""
    if isinstance(imbalance_factor, bool) or not isinstance(imbalance_factor, Real):
        raise ConfigError(
            f"imbalance_factor must be a number >= 1 (n_max / n_min, e.g. 100; 1 for a balanced control), "
            f"got {imbalance_factor!r}"
        )
    value = float(imbalance_factor)
    if not math.isfinite(value) or value < 1:
        raise ConfigError(
            f"imbalance_factor must be a finite number >= 1 (n_max / n_min, e.g. 100; 1 for a balanced control), "
            f"got {imbalance_factor!r}"
        )
    return value


def lt_counts(n_max: int, num_classes: int, imbalance_factor: float, profile: str = "exp") -> list[int]:
    """Per-class training counts, class 0 the head. Float64 and int() truncation as the references do."""
    IMBALANCE_PROFILES.get(profile)
    imb = 1.0 / check_imbalance_factor(imbalance_factor)
    if num_classes < 2:
        raise ConfigError(f"a long-tailed set needs at least 2 classes, got {num_classes}")
    if profile == "exp":
        return [int(n_max * imb ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    # The references build C//2 + C//2 entries, one short when C is odd; we give the tail the rest.
    head = num_classes // 2
    return [n_max] * head + [int(n_max * imb)] * (num_classes - head)


def select_longtail(labels: np.ndarray, counts: list[int], mode: str = "first", seed: int = 0) -> np.ndarray:
    """Indices of the long-tailed subset, grouped by class (class 0 first).

    ``"first"`` keeps the first ``counts[c]`` images of class c in file order. ``"shuffle"`` reproduces
    LDAM-DRW's ``np.random.seed(rand_number)`` followed by one ``np.random.shuffle`` per class.
    """
    SUBSET_MODES.get(mode)
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed) if mode == "shuffle" else None
    chosen = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(labels == c)
        if len(idx) < n:
            raise DataError(f"class {c} has {len(idx)} images, fewer than the {n} the profile asks for")
        if rng is not None:
            rng.shuffle(idx)
        chosen.append(idx[:n])
    return np.concatenate(chosen)


def holdout_split(labels: np.ndarray, indices: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve ``fraction`` of each class out of ``indices`` (rounded, at least one image left to train on).

    Returns ``(train_indices, val_indices)``. The validation set is long-tailed like the training set.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, val = [], []
    for c in np.unique(labels[indices]):
        idx = indices[labels[indices] == c]
        k = min(int(round(fraction * len(idx))), len(idx) - 1)
        picked = rng.permutation(len(idx))
        val.append(idx[np.sort(picked[:k])])
        train.append(idx[np.sort(picked[k:])])
    return np.concatenate(train), np.concatenate(val)


def unused_split(labels: np.ndarray, used: np.ndarray, per_class: int, num_classes: int, seed: int) -> np.ndarray:
    """A balanced validation set of ``per_class`` images per class, drawn from images not in ``used``."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    free = np.ones(len(labels), dtype=bool)
    free[used] = False
    val = []
    for c in range(num_classes):
        idx = np.flatnonzero(free & (labels == c))
        if len(idx) < per_class:
            raise ConfigError(
                f"val_split='unused' needs {per_class} unused images of class {c}, but only {len(idx)} are left "
                "after the long-tailed subset; lower val_per_class or use val_split='holdout'"
            )
        val.append(np.sort(rng.choice(idx, per_class, replace=False)))
    return np.concatenate(val)


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels), minlength=num_classes)


# --------------------------------------------------------------------------- many / medium / few

GROUP_NAMES = ("many", "medium", "few")


@dataclass(frozen=True)
class ClassGroups:
    """Which classes count as many-, medium- and few-shot under a named scheme."""

    scheme: str
    members: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    @property
    def description(self) -> str:
        return GROUP_SCHEMES.entry(self.scheme).description

    def as_dict(self) -> dict[str, list[int]]:
        return {name: list(m) for name, m in zip(GROUP_NAMES, self.members)}

    def label(self) -> str:
        sizes = "/".join(str(len(m)) for m in self.members)
        return f"groups: {self.scheme} ({self.description}; {sizes} classes)"


def _strict(counts: np.ndarray):
    return counts > 100, (counts >= 20) & (counts <= 100), counts < 20


def _inclusive(counts: np.ndarray):
    return counts >= 100, (counts > 20) & (counts < 100), counts <= 20


def _oltr(counts: np.ndarray):
    return counts > 100, (counts > 20) & (counts <= 100), counts <= 20


def _thirds(counts: np.ndarray):
    order = np.argsort(-counts, kind="stable")
    k = int(round(len(counts) / 3))
    masks = [np.zeros(len(counts), dtype=bool) for _ in range(3)]
    masks[0][order[:k]] = True
    masks[2][order[len(counts) - k:]] = True
    masks[1][order[k:len(counts) - k]] = True
    return masks


GROUP_SCHEMES: Registry = Registry("group scheme")
GROUP_SCHEMES.add("strict", _strict, "many n>100, medium 20<=n<=100, few n<20 (WB, ImbSAM, CMO)")
GROUP_SCHEMES.add("inclusive", _inclusive, "many n>=100, medium 20<n<100, few n<=20 (CC-SAM)")
GROUP_SCHEMES.add("oltr", _oltr, "many n>100, medium 20<n<=100, few n<=20 (OLTR's ImageNet-LT split; CMO's "
                  "ImageNet-LT and iNaturalist code)")
GROUP_SCHEMES.add("thirds", _thirds, "thirds by training frequency: many = top third, few = bottom third")


def class_groups(counts: list[int] | np.ndarray, scheme: str = "strict") -> ClassGroups:
    """Split classes into many / medium / few by their training counts under ``scheme``."""
    masks = GROUP_SCHEMES.get(scheme)(np.asarray(counts))
    return ClassGroups(scheme, tuple(tuple(int(i) for i in np.flatnonzero(m)) for m in masks))
