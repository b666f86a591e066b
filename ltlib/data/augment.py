"""Batched augmentation on uint8 tensors on the device: no PIL, no per-sample Python.

``pad_crop_flip`` does what torchvision's ``RandomCrop(size, padding=p)`` (zero fill) followed by
``RandomHorizontalFlip()`` does to each raw image, for a whole batch in one gather.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding, and a random horizontal flip: ``B x C x H x W`` uint8 in and out.

    The output is a channels-last view (its memory is ``B x H x W x C``), which is what the
    convolutions want; call ``.contiguous()`` for NCHW memory.
    """
    b, _, h, w = images.shape
    device = images.device
    if padding > 0:
        images = F.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator, device=device)
    cols = torch.arange(w, device=device).expand(b, w)
    if flip:
        flipped = torch.rand((b, 1), generator=generator, device=device) < 0.5
        cols = torch.where(flipped, w - 1 - cols, cols)
    rows = top + torch.arange(h, device=device)                      # b x h
    cols = left + cols                                               # b x w
    batch = torch.arange(b, device=device)[:, None, None]
    out = images[batch, :, rows[:, :, None], cols[:, None, :]]       # b x h x w x c
    return out.permute(0, 3, 1, 2)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] -> (x - mean) / std, in the requested memory format."""
    x = images.float().div_(255.0).sub_(mean).div_(std)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=fmt)
