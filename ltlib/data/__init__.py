"""Data: raw sources, long-tailed subsets, samplers, and the device-resident loader."""
from .datasets import DATASETS, LongTailData, load_longtail
from .loader import DeviceLoader
from .longtail import (GROUP_SCHEMES, ClassGroups, check_imbalance_factor, class_counts, class_groups, lt_counts,
                       select_longtail)
from .samplers import SAMPLERS, InstanceSampler, build_sampler
from .sources import ImageSet, load_cifar, load_fashion_mnist


__all__ = [
    "DATASETS", "GROUP_SCHEMES", "SAMPLERS", "ClassGroups", "DeviceLoader", "ImageSet", "InstanceSampler",
    "LongTailData", "build_sampler", "check_imbalance_factor", "class_counts", "class_groups", "load_cifar",
    "load_fashion_mnist", "load_longtail", "lt_counts", "select_longtail",
]
