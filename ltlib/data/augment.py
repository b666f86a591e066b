"""Batched augmentation on uint8 tensors on the device: no PIL, no per-sample Python.

``pad_crop_flip`` does what torchvision's ``RandomCrop(size, padding=p)`` (zero fill) followed by
``RandomHorizontalFlip()`` does to each raw image, for a whole batch in one gather. The ImageNet-style
recipes' ``RandomResizedCrop`` and ``ColorJitter`` are :func:`random_resized_crop` and :func:`color_jitter`.
"""
from __future__ import annotations

import functools
import math

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


def resized_crop_boxes(height: int, width: int, count: int, generator: torch.Generator, *,
                       scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                       attempts: int = 10, device: torch.device | str = "cpu") -> torch.Tensor:
    """``count`` crop boxes ``(x1, y1, x2, y2)`` drawn as torchvision's ``RandomResizedCrop.get_params`` draws
    them: up to ``attempts`` tries of an area in ``scale`` and a log-uniform aspect ratio in ``ratio``, the first
    that fits wins; if none fits, the centre crop with the aspect ratio clamped to ``ratio``."""
    area = height * width
    target = area * torch.empty(count, attempts, device=device).uniform_(*scale, generator=generator)
    log_r = torch.empty(count, attempts, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                                  generator=generator)
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(1, keepdim=True)                    # the first try that fits (0 if none does)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    # the fall-back: the whole image, its aspect ratio clamped to the range, centred
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    ok = fits.any(1)
    w = torch.where(ok, w, torch.full_like(w, fw))
    h = torch.where(ok, h, torch.full_like(h, fh))
    u = torch.rand(count, 2, device=device, generator=generator)
    top = torch.where(ok, torch.floor(u[:, 0] * (height - h + 1)), torch.div(height - h, 2, rounding_mode="floor"))
    left = torch.where(ok, torch.floor(u[:, 1] * (width - w + 1)), torch.div(width - w, 2, rounding_mode="floor"))
    return torch.stack([left, top, left + w, top + h], 1)


def random_resized_crop(images: torch.Tensor, size: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """``RandomResizedCrop(size)`` and an optional ``RandomHorizontalFlip()`` for a batch: ``B x C x H x W`` uint8
    in, ``B x C x size x size`` float32 in [0, 255] out.

    The boxes are drawn as torchvision draws them (:func:`resized_crop_boxes`); each is resampled by
    ``roi_align`` (bilinear samples averaged over each output pixel's footprint, which stands in for
    torchvision's antialiased resize). From a pre-resized copy this is an approximation of cropping the
    original image (see ``ltlib.data.folders``).
    """
    b, _, h, w = images.shape
    boxes = resized_crop_boxes(h, w, b, generator, device=images.device)
    rois = torch.cat([torch.arange(b, device=images.device, dtype=boxes.dtype)[:, None], boxes], 1)
    from torchvision.ops import roi_align  # imported here: it costs every ltlib import ~2 s

    out = roi_align(images.float(), rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1,
                    aligned=True)
    if flip:
        flipped = torch.rand(b, generator=generator, device=images.device) < 0.5
        out = torch.where(flipped[:, None, None, None], out.flip(3), out)
    return out


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centre ``size x size`` of each image (a view), placed as torchvision's ``CenterCrop`` places it."""
    h, w = images.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"a centre crop of {size} pixels does not fit images of {h} x {w}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return images[..., top:top + size, left:left + size]


_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


@functools.lru_cache(maxsize=None)
def _gray_weights(device: torch.device) -> torch.Tensor:
    """The grayscale weights on ``device``, copied there once (a copy per batch would wait for the device)."""
    return torch.tensor(_GRAY, device=device).view(1, 3, 1, 1)


def color_jitter(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """``ColorJitter(brightness=s, contrast=s, saturation=s)`` on float RGB images in [0, 255], per image.

    Each image draws its three factors from U(1 - s, 1 + s) and applies the three adjustments in its own
    random order, as torchvision does; values are clamped to [0, 255] after each (a factor of 1 is the
    identity, so the order is built from three masked passes). PIL rounds to uint8 between the steps; this
    does not.
    """
    b, c = images.shape[:2]
    if c != 3:
        raise ValueError(f"color_jitter needs RGB images, got {c} channels")
    device = images.device
    factors = torch.empty(b, 3, device=device).uniform_(max(0.0, 1 - strength), 1 + strength, generator=generator)
    order = torch.argsort(torch.rand(b, 3, device=device, generator=generator), dim=1)
    gray_w = _gray_weights(device)
    x = images
    for position in range(3):
        which = order[:, position]
        f = [torch.where(which == k, factors[:, k], torch.ones_like(factors[:, k])).view(b, 1, 1, 1)
             for k in range(3)]
        x = (x * f[0]).clamp(0, 255)                                                  # brightness
        mean = (x * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        x = (mean + f[1] * (x - mean)).clamp(0, 255)                                  # contrast
        gray = (x * gray_w).sum(1, keepdim=True)
        x = (gray + f[2] * (x - gray)).clamp(0, 255)                                  # saturation
    return x


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (or float in [0, 255]) -> float32 in [0, 1] -> (x - mean) / std, in the requested memory format."""
    x = (images.float() if images.dtype == torch.uint8 else images.clone()).div_(255.0).sub_(mean).div_(std)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=fmt)
