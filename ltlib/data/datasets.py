"""Named long-tailed data sets: the raw source, its constants, and the train / val / test split."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

from ..errors import ConfigError
from ..registry import Registry
from .longtail import (ClassGroups, class_counts, class_groups, holdout_split, lt_counts, select_longtail,
                       unused_split)
from .sources import ImageSet, load_cifar, load_fashion_mnist


@dataclass(frozen=True)
class DatasetSpec:
    """A raw data set and what a long-tailed version of it needs to know."""

    load: Callable[[str, str | None], ImageSet]
    num_classes: int
    n_max: int                      # training images per class in the full set
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int               # random-crop padding of the standard recipe, pixels
    image_shape: tuple[int, int, int]


DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASETS.add("fashion_mnist_lt", DatasetSpec(
    lambda split, root: load_fashion_mnist(split, root), 10, 6000, (0.2860,), (0.3530,), 2, (1, 28, 28)),
    "Fashion-MNIST-LT: 28x28x1, 10 classes, 6,000 per class before subsampling (apt: dataset-fashion-mnist)")
DATASETS.add("cifar10_lt", DatasetSpec(
    lambda split, root: load_cifar(10, split, root), 10, 5000,
    (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 4, (3, 32, 32)),
    "CIFAR-10-LT: 32x32x3, 10 classes, 5,000 per class (official python-pickle files)")
DATASETS.add("cifar100_lt", DatasetSpec(
    lambda split, root: load_cifar(100, split, root), 100, 500,
    (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 4, (3, 32, 32)),
    "CIFAR-100-LT: 32x32x3, 100 classes (fine labels), 500 per class; LDAM-DRW's normalisation constants")


@dataclass(frozen=True)
class LongTailData:
    """A long-tailed training set, an optional validation set and the balanced test set."""

    name: str
    train: ImageSet
    val: ImageSet | None
    test: ImageSet
    class_counts: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    def groups(self, scheme: str = "strict") -> ClassGroups:
        return class_groups(self.class_counts, scheme)


@lru_cache(maxsize=4)
def _raw(dataset: str, split: str, data_dir: str | None) -> ImageSet:
    return DATASETS.get(dataset).load(split, data_dir)


def load_longtail(dataset: str = "fashion_mnist_lt", imbalance_factor: float = 100, *,
                  imbalance_profile: str = "exp", n_max: int | None = None, subset: str = "first",
                  subset_seed: int = 0, val_split: str = "none", val_fraction: float = 0.1,
                  val_per_class: int = 100, test_per_class: int | None = None,
                  data_dir: str | None = None) -> LongTailData:
    """Build a long-tailed training set (and validation split) from a named data set.

    ``n_max`` caps the head class (None: the data set's full per-class count). ``subset`` picks the
    images ("first" or "shuffle" with ``subset_seed``). ``val_split`` is "none", "holdout" (carve
    ``val_fraction`` of each class from the long-tailed set) or "unused" (``val_per_class`` images per
    class, balanced, from training images the long-tailed subset left out). ``test_per_class`` keeps
    only the first k test images of each class (for smoke tests).
    """
    spec = DATASETS.get(dataset)
    n_max = spec.n_max if n_max is None else n_max
    if not 1 <= n_max <= spec.n_max:
        raise ConfigError(f"n_max must be in 1..{spec.n_max} for {dataset}, got {n_max}")
    raw = _raw(dataset, "train", data_dir)
    labels = raw.labels.numpy()
    counts = lt_counts(n_max, spec.num_classes, imbalance_factor, imbalance_profile)
    train_idx = select_longtail(labels, counts, subset, subset_seed)
    val_idx = None
    if val_split == "holdout":
        train_idx, val_idx = holdout_split(labels, train_idx, val_fraction, subset_seed)
    elif val_split == "unused":
        val_idx = unused_split(labels, train_idx, val_per_class, spec.num_classes, subset_seed)
    elif val_split != "none":
        raise ConfigError(f"unknown val_split {val_split!r}: use 'none', 'holdout' or 'unused'")
    test = _raw(dataset, "test", data_dir)
    if test_per_class is not None:
        test = test.subset(select_longtail(test.labels.numpy(), [test_per_class] * spec.num_classes, "first"))
    train = raw.subset(train_idx)
    return LongTailData(
        name=dataset, train=train, val=None if val_idx is None else raw.subset(val_idx), test=test,
        class_counts=class_counts(train.labels.numpy(), spec.num_classes),
        mean=spec.mean, std=spec.std, crop_padding=spec.crop_padding,
        info=dict(imbalance_factor=float(imbalance_factor), imbalance_profile=imbalance_profile, n_max=n_max,
                  subset=subset, subset_seed=subset_seed, val_split=val_split,
                  train_size=len(train), val_size=0 if val_idx is None else len(val_idx), test_size=len(test)),
    )
