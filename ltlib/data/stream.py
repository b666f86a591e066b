"""The DataLoader path for folder data sets that do not fit in memory: the training split is decoded from its
image files every epoch by worker processes, through torchvision's own transforms (RandomResizedCrop, flip,
ColorJitter, normalise), as the papers' code reads ImageNet-LT and iNaturalist.

Each epoch draws the global order with the run's seeded sampler, as the device-resident loader does; under
``torchrun`` each rank decodes only its slice of every global batch. Every image's augmentation is seeded by
(seed, epoch, position in the epoch), so an epoch is the same whatever the number of workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..core.env import derived_seed
from ..core.errors import DataError
from ..core.replicas import DistInfo, check_batch, dist_info, steps_per_epoch
from ..core.targets import Targets
from .folders import FolderSplit, open_rgb
from .loader import _AUGMENT_STREAM, _MIX_STREAM, _ORDER_STREAM, epoch_generator
from .mixing import NoMixing
from .samplers import InstanceSampler, Sampler


@dataclass(frozen=True, eq=False)
class StreamedImages:
    """A training split that stays in its image files: labels and class names as an ``ImageSet`` has them, and
    no ``images`` tensor (what needs one says so)."""

    split: FolderSplit
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def images(self) -> torch.Tensor:
        raise DataError("this training split is streamed from its image files (data_path='stream'), so there is no "
                        "image tensor to read: stage 2, sharpness probes and training-set predictions need "
                        "data_path='memory'")

    def subset(self, indices) -> "StreamedImages":
        idx = np.asarray(indices)
        split = FolderSplit(self.split.root, tuple(self.split.paths[i] for i in idx), self.split.labels[idx],
                            self.split.num_classes)
        return StreamedImages(split, self.labels[torch.as_tensor(idx, dtype=torch.long)], self.classes)


def stream_transform(size: int, flip: bool, jitter: float, mean, std) -> Callable:
    """The training view as the papers' code builds it with PIL: RandomResizedCrop, flip, ColorJitter, normalise."""
    from torchvision import transforms  # imported here: it costs every ltlib import ~2 s

    steps: list = [transforms.RandomResizedCrop(size)]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    if jitter:
        steps.append(transforms.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=0))
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])


class _Seeded(Dataset):
    """``(index, position)`` -> the transformed image and its label, the transform's draws seeded by the position."""

    def __init__(self, split: FolderSplit, transform, seed: int, epoch: int) -> None:
        self.split, self.transform, self.seed, self.epoch = split, transform, seed, epoch

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, position = key
        image = open_rgb(self.split.root / self.split.paths[index])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(self.seed, self.epoch, _AUGMENT_STREAM, position))
            return self.transform(image), int(self.split.labels[index])


class StreamLoader:
    """Batches decoded from image files by ``num_workers`` processes; the same ``epoch()`` interface as
    :class:`~ltlib.data.loader.DeviceLoader`. It shards itself under DDP (``shards_itself``)."""

    shards_itself = True

    def __init__(self, data: StreamedImages, *, batch_size: int, mean, std, crop: int, flip: bool = True,
                 jitter: float = 0.0, sampler: Sampler | None = None, seed: int = 0, drop_last: bool = False,
                 channels_last: bool = False, device: torch.device | str = "cpu", mix=None, num_workers: int = 8,
                 info: DistInfo | None = None) -> None:

        self.data, self.split = data, data.split
        self.device = torch.device(device)
        self.labels = data.labels.to(self.device)
        self.sampler = sampler or InstanceSampler(self.labels)
        self.batch_size, self.seed, self.drop_last, self.channels_last = batch_size, seed, drop_last, channels_last
        self.transform = stream_transform(crop, flip, jitter, mean, std)
        self.mix = mix or NoMixing()
        if hasattr(self.mix, "start_epoch"):
            raise DataError("CMO fetches its minority patches by index, which the streaming path cannot do yet: "
                            "use data_path='memory' (a smaller image_size if the set does not fit)")
        self.num_workers = num_workers
        self.info = info or dist_info()
        if self.info.enabled:
            check_batch(batch_size, self.info.world_size)

    def __len__(self) -> int:
        """Global batches per epoch (under DDP without a last batch smaller than the world: ``steps_per_epoch``)."""
        return steps_per_epoch(len(self.labels), self.batch_size, self.drop_last, self.info.world_size)

    def batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """This rank's ``(index, position)`` keys of every global batch of ``epoch``."""
        order = self.sampler.epoch_indices(epoch_generator(self.seed, epoch, _ORDER_STREAM, self.device)).cpu()
        rank, world = self.info.rank, self.info.world_size
        out = []
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size].tolist()
            lo, hi = len(idx) * rank // world, len(idx) * (rank + 1) // world
            out.append([(i, start + k) for k, i in enumerate(idx[lo:hi], start=lo)])
        return out

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, Targets]]:
        loader = DataLoader(_Seeded(self.split, self.transform, self.seed, epoch), batch_sampler=self.batches(epoch),
                            num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        mix_gen = epoch_generator(self.seed, epoch, _MIX_STREAM, self.device)
        mix_rng = np.random.default_rng(derived_seed(self.seed, epoch, _MIX_STREAM))
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
            yield self.mix(images, labels.to(self.device, non_blocking=True), mix_rng, mix_gen)
