"""Named long-tailed data sets: the raw source, its constants, and the train / val / test split.

Two kinds: a balanced source made long-tailed by an imbalance profile (Fashion-MNIST, CIFAR), and a
*natural* long tail read from an image root and its split files (ImageNet-LT, Places-LT, iNaturalist-2018;
:mod:`ltlib.data.folders`), whose training split is used as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from ..core.errors import ConfigError, DataError
from ..core.registry import Registry
from .folders import IMAGENET_MEAN, IMAGENET_STD, FolderSplit, load_folder_images, read_folder_split
from .longtail import ClassGroups, class_counts, class_groups, holdout_split, lt_counts, select_longtail, unused_split
from .sources import ImageSet, load_cifar, load_fashion_mnist
from .stream import StreamedImages


@dataclass(frozen=True)
class DatasetSpec:
    """A raw data set and what a long-tailed version of it needs to know."""

    load: Callable[[str, str | None, int | None], ImageSet]   # (split, data_dir, image_size)
    num_classes: int
    n_max: int                      # training images per class in the full set (natural: the head class)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int               # random-crop padding of the standard recipe, pixels
    image_shape: tuple[int, int, int]
    # natural long tails (folder data sets): the training split is the long tail; its imbalance factor is
    # n_max / the rarest class; images are kept at image_shape's side, trained on random-resized crops
    # of 7/8 of that side (224 of 256) and tested on the centre crop
    natural: bool = False
    imbalance_factor: float | None = None
    splits: tuple[str, ...] = ("train", "test")
    read: Callable[[str, str | None], FolderSplit] | None = None   # (split, data_dir): the listed files, undecoded

    def crop_size(self, image_size: int | None) -> int | None:
        """The side of the training and test crops of a natural data set kept at ``image_size`` pixels."""
        return round((image_size or self.image_shape[-1]) * 7 / 8) if self.natural else None


DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASETS.add("fashion_mnist_lt", DatasetSpec(
    lambda split, root, _: load_fashion_mnist(split, root), 10, 6000, (0.2860,), (0.3530,), 2, (1, 28, 28)),
    "Fashion-MNIST-LT: 28x28x1, 10 classes, 6,000 per class before subsampling (apt: dataset-fashion-mnist)")
DATASETS.add("cifar10_lt", DatasetSpec(
    lambda split, root, _: load_cifar(10, split, root), 10, 5000,
    (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 4, (3, 32, 32)),
    "CIFAR-10-LT: 32x32x3, 10 classes, 5,000 per class (official python-pickle files)")
DATASETS.add("cifar100_lt", DatasetSpec(
    lambda split, root, _: load_cifar(100, split, root), 100, 500,
    (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 4, (3, 32, 32)),
    "CIFAR-100-LT: 32x32x3, 100 classes (fine labels), 500 per class; LDAM-DRW's normalisation constants")


def folder_spec(name: str, num_classes: int, n_max: int, imbalance_factor: float,
                files: dict[str, str | tuple[str, ...]],
                root_env: str | None = None, image_size: int = 256, mean: tuple[float, ...] = IMAGENET_MEAN,
                std: tuple[float, ...] = IMAGENET_STD) -> DatasetSpec:
    """The spec of a natural long-tailed folder data set whose ``files`` name each split's list (or json; several
    names: the first found).

    ``n_max`` and ``imbalance_factor`` are the training split's published head-class size and n_max / n_min:
    a split file that disagrees is refused when it is read (the wrong list, most likely).
    """
    def load(split: str, root: str | None, size: int | None) -> ImageSet:
        return load_folder_images(name, split, files[split], root, num_classes, size or image_size,
                                  root_env=root_env)
    def read(split: str, root: str | None) -> FolderSplit:
        return read_folder_split(name, files[split], root, num_classes, root_env=root_env)
    return DatasetSpec(load, num_classes, n_max, mean, std, 0, (3, image_size, image_size),
                       natural=True, imbalance_factor=float(imbalance_factor), splits=tuple(files), read=read)


# The lists of the OLTR release (Liu et al., 2019) and iNaturalist-2018's own json (or the "path label" lists
# that CMO's and other repositories ship); the papers test iNaturalist on its validation set. ImageNet
# statistics normalise, except iNaturalist as CMO's code does.
DATASETS.add("imagenet_lt", folder_spec(
    "imagenet_lt", 1000, 1280, 256, {"train": "ImageNet_LT_train.txt", "val": "ImageNet_LT_val.txt",
                                     "test": "ImageNet_LT_test.txt"}, "LTLIB_IMAGENET_LT_DIR"),
    "ImageNet-LT: 115,846 training images, 1,000 classes of 1,280 to 5 ($LTLIB_IMAGENET_LT_DIR: the ImageNet "
    "root with the ImageNet_LT_*.txt lists)")
DATASETS.add("places_lt", folder_spec(
    "places_lt", 365, 4980, 996, {"train": "Places_LT_train.txt", "val": "Places_LT_val.txt",
                                  "test": "Places_LT_test.txt"}, "LTLIB_PLACES_LT_DIR"),
    "Places-LT: 62,500 training images, 365 classes of 4,980 to 5 ($LTLIB_PLACES_LT_DIR: the Places-365 root "
    "with the Places_LT_*.txt lists)")
DATASETS.add("inat2018", folder_spec(
    "inat2018", 8142, 1000, 500, {"train": ("train2018.json", "iNaturalist18_train.txt"),
                                  "test": ("val2018.json", "iNaturalist18_val.txt")}, "LTLIB_INAT2018_DIR",
    mean=(0.466, 0.471, 0.380), std=(0.195, 0.194, 0.192)),   # CMO's inat18_train.py normalisation
    "iNaturalist-2018: 437,513 training images, 8,142 classes of 1,000 to 2, tested on val2018 "
    "($LTLIB_INAT2018_DIR: the root with train2018.json and val2018.json, or the iNaturalist18_*.txt lists)")


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
    crop_size: int | None = None    # natural data sets: random-resized crops of this side, centre crop to test

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    def groups(self, scheme: str = "strict") -> ClassGroups:
        return class_groups(self.class_counts, scheme)


@lru_cache(maxsize=4)
def _raw(dataset: str, split: str, data_dir: str | None, image_size: int | None = None) -> ImageSet:
    return DATASETS.get(dataset).load(split, data_dir, image_size)


def load_longtail(dataset: str = "fashion_mnist_lt", imbalance_factor: float | None = None, *,
                  imbalance_profile: str = "exp", n_max: int | None = None, subset: str = "first",
                  subset_seed: int = 0, val_split: str = "none", val_fraction: float = 0.1,
                  val_per_class: int = 100, test_per_class: int | None = None,
                  data_dir: str | None = None, image_size: int | None = None, stream: bool = False) -> LongTailData:
    """Build a long-tailed training set (and validation split) from a named data set (IF 100 unless given).

    ``n_max`` caps the head class (None: the data set's full per-class count). ``subset`` picks the
    images ("first" or "shuffle" with ``subset_seed``). ``val_split`` is "none", "holdout" (carve
    ``val_fraction`` of each class from the long-tailed set) or "unused" (``val_per_class`` images per
    class, balanced, from training images the long-tailed subset left out). ``test_per_class`` keeps
    only the first k test images of each class (for smoke tests).

    A natural data set (``DatasetSpec.natural``) keeps its training split as it is: ``imbalance_factor``
    and ``n_max`` must be its own (None takes them), ``val_split="official"`` is its validation list, and
    ``image_size`` is the side its images are kept at. ``stream`` leaves its training split in the image
    files (:class:`~ltlib.data.stream.StreamedImages`) for the DataLoader path.
    """
    spec = DATASETS.get(dataset)
    if spec.natural:
        return _load_natural(dataset, spec, imbalance_factor, n_max, val_split, val_fraction, subset_seed,
                             test_per_class, data_dir, image_size, stream)
    if stream:
        raise ConfigError(f"stream is for folder data sets; {dataset} is held in memory")
    if image_size is not None:
        raise ConfigError(f"image_size is for folder data sets; {dataset} keeps its images at {spec.image_shape}")
    imbalance_factor = 100 if imbalance_factor is None else imbalance_factor
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
        raise ConfigError(f"val_split {val_split!r} does not apply to {dataset}: use 'none', 'holdout' or 'unused'")
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


def check_natural_tail(dataset: str, spec: DatasetSpec, imbalance_factor: float | None, n_max: int | None) -> None:
    """A natural long tail has its own imbalance factor and head class: other values are refused (None takes them)."""
    if imbalance_factor is not None and float(imbalance_factor) != spec.imbalance_factor:
        raise ConfigError(f"{dataset} is long-tailed by itself (imbalance factor {spec.imbalance_factor:g}), not "
                          f"{imbalance_factor!r}: leave imbalance_factor unset")
    if n_max is not None and n_max != spec.n_max:
        raise ConfigError(f"{dataset}'s head class has {spec.n_max} images, not {n_max}: leave n_max unset")


def _load_natural(dataset: str, spec: DatasetSpec, imbalance_factor: float | None, n_max: int | None,
                  val_split: str, val_fraction: float, subset_seed: int, test_per_class: int | None,
                  data_dir: str | None, image_size: int | None, stream: bool = False) -> LongTailData:
    """A natural long-tailed data set: its training split, its validation list or a hold-out, its test list."""
    check_natural_tail(dataset, spec, imbalance_factor, n_max)
    if stream and val_split == "holdout":      # before any file is read
        raise ConfigError("val_split='holdout' carves the validation set out of the training split, which streams "
                          "from its files: use 'official' or 'none' with data_path='stream'")
    if stream:
        split = spec.read("train", data_dir)
        train = StreamedImages(split, torch.from_numpy(split.labels.copy()),
                               tuple(str(c) for c in range(spec.num_classes)))
    else:
        train = _raw(dataset, "train", data_dir, image_size)
    counts = class_counts(train.labels.numpy(), spec.num_classes)
    if counts.max() != spec.n_max or counts.min() < 1 or counts.max() / counts.min() != spec.imbalance_factor:
        raise DataError(f"{dataset}'s training split should have {spec.n_max} to "
                        f"{spec.n_max / spec.imbalance_factor:g} images per class in each of {spec.num_classes} classes, but the one read has "
                        f"{counts.max()} to {counts.min()}: is it the right split file?")
    val = None
    if val_split == "official":
        if "val" not in spec.splits:
            raise ConfigError(f"{dataset} has no validation list: use val_split 'none' or 'holdout'")
        val = _raw(dataset, "val", data_dir, image_size)
    elif val_split == "holdout":
        train_idx, val_idx = holdout_split(train.labels.numpy(), np.arange(len(train)), val_fraction, subset_seed)
        train, val = train.subset(train_idx), train.subset(val_idx)
        counts = class_counts(train.labels.numpy(), spec.num_classes)
    elif val_split != "none":
        raise ConfigError(f"val_split {val_split!r} does not apply to {dataset}: use 'none', 'official' or 'holdout'")
    test = _raw(dataset, "test", data_dir, image_size)
    if test_per_class is not None:
        keep = np.concatenate([np.flatnonzero(test.labels.numpy() == c)[:test_per_class]
                               for c in range(spec.num_classes)])
        test = test.subset(np.sort(keep))
    return LongTailData(
        name=dataset, train=train, val=val, test=test, class_counts=counts, mean=spec.mean, std=spec.std,
        crop_padding=0, crop_size=spec.crop_size(image_size),
        info=dict(imbalance_factor=spec.imbalance_factor, imbalance_profile="natural", n_max=spec.n_max,
                  val_split=val_split, image_size=image_size or spec.image_shape[-1], stream=stream,
                  train_size=len(train),
                  val_size=0 if val is None else len(val), test_size=len(test)),
    )
