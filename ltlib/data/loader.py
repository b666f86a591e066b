"""The fast loader: the whole data set is one uint8 tensor on the device; a batch is an index tensor.

Each epoch's order and augmentation come from generators seeded by (seed, epoch, stream), so an
epoch can be replayed exactly after a resume without saving any generator state.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..core.env import derived_seed
from ..core.targets import Targets
from .augment import color_jitter, normalize, pad_crop_flip, random_resized_crop
from .mixing import NoMixing
from .samplers import InstanceSampler, Sampler
from .sources import ImageSet


_ORDER_STREAM, _AUGMENT_STREAM, _MIX_STREAM = 0, 1, 2


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device) -> torch.Generator:
    """The generator for one (seed, epoch, stream); streams keep data order and augmentation independent."""
    return torch.Generator(device=device).manual_seed(derived_seed(seed, epoch, stream))


class DeviceLoader:
    """Batches of normalised, augmented images from a device-resident uint8 data set.

    Args:
        data: the training images (any device; moved to ``device``).
        batch_size: images per step; the last partial batch is kept unless ``drop_last``.
        mean, std: per-channel normalisation constants in [0, 1] units.
        sampler: draws each epoch's indices; defaults to a plain shuffle.
        padding: zero padding of the random crop in pixels (0 turns the crop off).
        flip: random horizontal flips.
        resized_crop: the output side of an ImageNet-style random-resized crop, which then replaces the padded
            crop (folder data sets); None for the padded crop.
        jitter: ColorJitter strength for brightness, contrast and saturation (0: off).
        seed: the training seed from which each epoch's draws derive.
        mix: the mixing rule applied to each normalised batch (see :mod:`ltlib.data.mixing`).
        strong: a strong-augmentation rule applied after the crop and flip, or None (:mod:`ltlib.data.strong`;
            the loader calls its ``start_epoch(seed, epoch)`` before each epoch).
    """

    def __init__(self, data: ImageSet, *, batch_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 sampler: Sampler | None = None, padding: int = 0, flip: bool = False, seed: int = 0,
                 drop_last: bool = False, channels_last: bool = False, device: torch.device | str = "cpu",
                 mix=None, resized_crop: int | None = None, jitter: float = 0.0,
                 strong=None) -> None:
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.sampler = sampler or InstanceSampler(self.labels)
        self.batch_size, self.padding, self.flip = batch_size, padding, flip
        self.resized_crop, self.jitter = resized_crop, jitter
        self.seed, self.drop_last, self.channels_last = seed, drop_last, channels_last
        self.mix = mix or NoMixing()
        self.strong = strong
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=self.device).view(shape)
        self.std = torch.tensor(std, device=self.device).view(shape)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, Targets]]:
        """Yield ``(images, targets)`` for one epoch: float images normalised; int64 labels, or
        :class:`~ltlib.data.mixing.MixedTargets` under a mixing rule."""
        order = self.sampler.epoch_indices(epoch_generator(self.seed, epoch, _ORDER_STREAM, self.device))
        augment = epoch_generator(self.seed, epoch, _AUGMENT_STREAM, self.device)
        mix_gen = epoch_generator(self.seed, epoch, _MIX_STREAM, self.device)
        mix_rng = np.random.default_rng(derived_seed(self.seed, epoch, _MIX_STREAM))
        if self.strong is not None:
            self.strong.start_epoch(self.seed, epoch)
        if hasattr(self.mix, "start_epoch"):
            self.mix.start_epoch(self, epoch)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self.mix(self.fetch(idx, augment), self.labels[idx], mix_rng, mix_gen)

    def fetch(self, idx: torch.Tensor, augment: torch.Generator) -> torch.Tensor:
        """The images at ``idx``, augmented with ``augment`` and normalised (a batch, or CMO's patches)."""
        raw = images = self.images[idx]
        if self.resized_crop:
            images = random_resized_crop(images, self.resized_crop, self.flip, augment)
        elif self.padding or self.flip:
            images = pad_crop_flip(images, self.padding, self.flip, augment)
        if self.strong is not None:
            images = self.strong(raw, images)
        if self.jitter:
            images = color_jitter(images.float(), self.jitter, augment)
        return normalize(images, self.mean, self.std, self.channels_last)
