"""Strong augmentation: the AutoAugment + Cutout pipeline of CMO's 400-epoch recipe and CC-SAM's variant.

Two rules, both for the CIFAR-style (in-memory) data sets (algorithms.md §1.3):

* ``"autoaug_cutout"`` (CC-SAM's AutoAug variant, with mixup off): after the usual pad-crop-flip, the CIFAR-10
  AutoAugment policy (25 sub-policies, geometric fill 128), then Cutout: one square of side 16, centred on a
  uniformly drawn pixel and clipped at the borders, set to 0 (black, before normalisation).
* ``"paco"`` (CMO's ``--use_randaug``, after PaCo): each image independently, with probability 1/2, gets the
  pipeline above, or else a SimCLR-style one on the raw image: RandomResizedCrop(scale 0.2-1), flip,
  ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, RandomGrayscale with p 0.2, GaussianBlur(sigma 0.1-2) with p 0.5.

torchvision's own transforms do the work (``torchvision.transforms.v2`` on uint8 tensors, on the images' device);
only Cutout, which torchvision lacks, is written here. They run per image, as the reference's PIL pipeline does:
a per-image policy has no batched form. Differences from the reference's PIL code: torchvision's CIFAR-10
policy stands in for the ``CIFAR10Policy`` class (the same sub-policies and magnitude bins; Solarize's threshold
runs from 255 rather than 256), and a 13-pixel GaussianBlur kernel (3 sigma at sigma 2) stands in for PIL's
``GaussianBlur(radius=sigma)``.

The transforms draw from torch's global CPU generator; each batch seeds it, inside ``fork_rng``, from a host
generator seeded per (seed, epoch) in :meth:`StrongAugment.start_epoch`, so an epoch replays exactly and nothing
waits for the device. CMO's patches, fetched by the same loader, draw from the same stream (both loaders of the
reference see the same pipeline). The transforms draw their parameters on the host; whether torchvision's ops wait
for a GPU somewhere inside has not been checked on one (tests/test_no_sync.py covers the standard pipeline only).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from ..core.env import derived_seed
from ..core.errors import ConfigError
from ..core.registry import Registry
from ..core.settings import Settings
from .datasets import DATASETS


CUTOUT_LENGTH = 16          # Cutout(n_holes=1, length=16), as CMO's and CC-SAM's code set it
BLUR_KERNEL = 13            # covers 3 sigma at the largest sigma, 2
_GLOBAL_RNG = threading.Lock()   # the transforms use torch's global generator; worker threads take turns
_STRONG_STREAM = 4               # the loader's streams are 0-2, CMO's patch stream 3


def cutout(image: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cutout with one hole: zero a ``length`` square (all channels) centred on a uniform pixel, clipped at the
    borders (so a hole near an edge is smaller). In place on ``C x H x W``; returns the image."""
    h, w = image.shape[-2:]
    cy, cx = int(torch.randint(h, (), generator=generator)), int(torch.randint(w, (), generator=generator))
    y0, y1 = max(cy - length // 2, 0), min(cy + length // 2, h)
    x0, x1 = max(cx - length // 2, 0), min(cx + length // 2, w)
    image[..., y0:y1, x0:x1] = 0
    return image


class StrongAugment:
    """A strong-augmentation rule: ``rule(raw, standard)`` maps a batch to its strongly augmented copy.

    ``raw`` is the batch as stored (``B x C x H x W`` uint8), ``standard`` the same images after the loader's
    pad-crop-flip; the output is uint8 of ``standard``'s shape. Call :meth:`start_epoch` before each epoch.
    """

    def __init__(self, kind: str) -> None:
        from torchvision.transforms import v2  # imported here: it costs every ltlib import ~2 s

        self.kind = kind
        self.autoaugment = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10, fill=128)
        self._v2 = v2
        self._seeds = np.random.default_rng(0)

    def start_epoch(self, seed: int, epoch: int) -> None:
        """Seed the host generator whose draws seed each batch of this epoch."""
        self._seeds = np.random.default_rng(derived_seed(seed, epoch, _STRONG_STREAM))

    def _simclr(self, size: int):
        v2 = self._v2
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True), v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(BLUR_KERNEL, sigma=(0.1, 2.0))], p=0.5)])

    def __call__(self, raw: torch.Tensor, standard: torch.Tensor) -> torch.Tensor:
        seed = int(self._seeds.integers(2 ** 62))
        standard = standard.contiguous()
        size = standard.shape[-1]
        simclr = self._simclr(size) if self.kind == "paco" else None
        out = []
        with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in range(len(standard)):
                if simclr is not None and float(torch.rand(())) >= 0.5:
                    out.append(simclr(raw[i]))
                else:
                    out.append(cutout(self.autoaugment(standard[i]).clone(), CUTOUT_LENGTH))
        return torch.stack(out)


def build_strong_augment(kind: str) -> StrongAugment | None:
    """The rule ``kind`` ("none" gives None: the loader's standard augmentation only)."""
    return STRONG_AUGMENTS.get(kind)(kind)


@dataclass(frozen=True)
class StrongAugmentSettings(Settings):
    """The strong-augmentation field of a run config, hashed when it is not "none" (earlier runs keep their hash)."""

    strong_augment: str = "none"

    @classmethod
    def check_block(cls, config) -> None:
        try:
            STRONG_AUGMENTS.get(config.strong_augment)
        except ConfigError as err:
            raise ConfigError(f"RunConfig.strong_augment: {err}") from None
        if config.strong_augment != "none" and DATASETS.get(config.dataset).natural:
            raise ConfigError(f"RunConfig.strong_augment: {config.strong_augment!r} is the CIFAR recipes' pipeline; "
                              f"{config.dataset} has no published one in ltlib, so set strong_augment='none'")

    @classmethod
    def used(cls, config) -> bool:
        return config.strong_augment != "none"


STRONG_AUGMENTS: Registry = Registry("strong augmentation")
STRONG_AUGMENTS.add("none", lambda kind: None, "the standard pad-crop-flip only")
STRONG_AUGMENTS.add("autoaug_cutout", StrongAugment,
                    "after pad-crop-flip: CIFAR-10 AutoAugment (fill 128), then Cutout 16 (CC-SAM's AutoAug variant)",
                    settings=StrongAugmentSettings)
STRONG_AUGMENTS.add("paco", StrongAugment, "per image, p 1/2: AutoAugment + Cutout, else SimCLR-style crop, jitter, "
                    "grey, blur (CMO's 400-epoch recipe, after PaCo)", settings=StrongAugmentSettings)
