"""Evaluation: per-class accuracy, overall accuracy and many / medium / few under a named grouping.

"Overall" is the mean of per-class accuracies (balanced accuracy); on a balanced test set it equals
plain top-1. Flip test-time augmentation (averaging the logits of an image and its mirror, as weight
balancing and ImbSAM report) is off by default and named ``tta``.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn

from ..core.precision import DEFAULT_PRECISION, autocast_for
from ..data import augment
from ..data.longtail import GROUP_NAMES, ClassGroups
from ..data.sources import ImageSet
from ..models.fold import fold_batchnorm


@dataclass(frozen=True)
class EvalResult:
    """Per-class accuracy (%) and the summaries derived from it."""

    per_class: np.ndarray          # accuracy in % per class
    support: np.ndarray            # test images per class
    top1: float                    # plain accuracy over all images, %

    @property
    def overall(self) -> float:
        return float(np.mean(self.per_class))

    def group_accuracy(self, groups: ClassGroups) -> dict[str, float]:
        """Mean per-class accuracy of each group (NaN for an empty group)."""
        return {name: float(np.mean(self.per_class[list(m)])) if m else float("nan")
                for name, m in zip(GROUP_NAMES, groups.members)}

    def summary(self, groups: ClassGroups) -> dict:
        return {"overall": self.overall, **self.group_accuracy(groups), "top1": self.top1,
                "per_class": [float(a) for a in self.per_class]}


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block, back in the mode it came in afterwards (even on an error)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def logit_scale(config) -> float:
    """The factor a run's logits are multiplied by before a softmax (calibration, sharpness): LDAM's s for a
    cosine head, whose raw logits are cosines in [-1, 1]; 1 for a linear head."""
    model_config = config.model_config
    return float(model_config.ldam_s) if model_config.classifier == "normed" else 1.0


def predict_logits(model: nn.Module, images: torch.Tensor, *, mean: tuple[float, ...], std: tuple[float, ...],
                   batch_size: int = 250, precision: str = DEFAULT_PRECISION, channels_last: bool = True,
                   tta: bool = False, fold_bn: bool = True, device: torch.device | str | None = None,
                   center_crop: int | None = None) -> torch.Tensor:
    """Float32 logits for uint8 ``images`` in eval mode, batched (250 is the measured CPU sweet spot).

    ``fold_bn`` evaluates a copy with BatchNorm folded into the convolutions (same function, faster).
    ``center_crop`` evaluates the centre crop of that side (the ImageNet-style view of a folder data set).
    ``tta`` averages the logits of the image and its horizontal flip.
    """
    return _predict(model, images, "logits", mean=mean, std=std, batch_size=batch_size, precision=precision,
                    channels_last=channels_last, tta=tta, fold_bn=fold_bn, device=device, center_crop=center_crop)


def predict_features(model: nn.Module, images: torch.Tensor, *, mean: tuple[float, ...], std: tuple[float, ...],
                     batch_size: int = 250, precision: str = DEFAULT_PRECISION, channels_last: bool = True,
                     fold_bn: bool = True, device: torch.device | str | None = None,
                     center_crop: int | None = None) -> torch.Tensor:
    """Float32 pooled features (``model.features``, the classifier's input) for uint8 ``images``, as
    :func:`predict_logits` computes its logits."""
    return _predict(model, images, "features", mean=mean, std=std, batch_size=batch_size, precision=precision,
                    channels_last=channels_last, tta=False, fold_bn=fold_bn, device=device, center_crop=center_crop)


@torch.inference_mode()
def _predict(model: nn.Module, images: torch.Tensor, output: str, *, mean, std, batch_size: int, precision: str,
             channels_last: bool, tta: bool, fold_bn: bool, device, center_crop: int | None) -> torch.Tensor:
    device = torch.device(device) if device is not None else next(model.parameters()).device
    shape = (1, -1, 1, 1)
    mean_t = torch.tensor(mean, device=device).view(shape)
    std_t = torch.tensor(std, device=device).view(shape)
    autocast = autocast_for(precision, device)
    out = []
    with eval_mode(model):
        net = fold_batchnorm(model) if fold_bn else model
        forward = net.features if output == "features" else net
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            if center_crop:
                batch = augment.center_crop(batch, center_crop)
            x = augment.normalize(_to_device(batch, device), mean_t, std_t, channels_last)
            with autocast():
                values = forward(x).float()
                if tta:
                    values = (values + forward(x.flip(3)).float()) / 2
            out.append(values)
    return torch.cat(out) if out else torch.empty(0)


def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of host images on ``device``: on CUDA through pinned memory without waiting, so the host prepares the
    next batch while the device works (a plain copy from pageable memory waits for the device first)."""
    if device.type == "cuda" and batch.device.type == "cpu":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def accuracy_from_logits(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> EvalResult:
    """Per-class accuracy via bincount (one host sync)."""
    labels = labels.to(logits.device)
    correct = (logits.argmax(1) == labels).long()
    support = torch.bincount(labels, minlength=num_classes)
    # the hits per class, counted without weights (a weighted bincount has no deterministic CUDA kernel)
    hits = torch.bincount(2 * labels + correct, minlength=2 * num_classes).view(num_classes, 2)[:, 1].float()
    support_np, hits_np = support.cpu().numpy(), hits.cpu().numpy()
    per_class = np.where(support_np > 0, 100.0 * hits_np / np.maximum(support_np, 1), np.nan)
    return EvalResult(per_class, support_np, float(100.0 * hits_np.sum() / max(support_np.sum(), 1)))


def evaluate(model: nn.Module, data: ImageSet, *, mean: tuple[float, ...], std: tuple[float, ...],
             batch_size: int = 250, precision: str = DEFAULT_PRECISION, channels_last: bool = True, tta: bool = False,
             fold_bn: bool = True, device: torch.device | str | None = None,
             center_crop: int | None = None) -> EvalResult:
    """Accuracy of ``model`` on ``data``, per class."""
    logits = predict_logits(model, data.images, mean=mean, std=std, batch_size=batch_size, precision=precision,
                            channels_last=channels_last, tta=tta, fold_bn=fold_bn, device=device,
                            center_crop=center_crop)
    return accuracy_from_logits(logits, data.labels, data.num_classes)
