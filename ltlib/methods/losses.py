"""Losses return per-sample values (reduction none) so step strategies can group samples.

Each loss is built from the training class counts (``class_counts``), which LDAM, Balanced Softmax and
the class weights need. Logits are promoted to float32 first, so the loss is computed in fp32 under bf16
autocast.

Class weights (DRW, algorithms.md §1.6) follow PyTorch's ``CrossEntropyLoss(weight=w)``: the batch loss
is sum_i w_{y_i} l_i / sum_i w_{y_i}. A per-sample loss returns ``w_{y_i} l_i * B / sum_j w_{y_j}``, so the
batch *mean* is PyTorch's value; under mixed targets each label set is normalised on its own, as CMO's
two criterion calls are. A loss with DRW switches its weights in ``start_epoch(epoch)``, which the
training loop calls before each epoch (so a resumed run switches at the same epoch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.registry import Registry
from ..core.settings import Settings


REWEIGHTS = ("none", "drw")


@dataclass(frozen=True)
class DRWSettings(Settings):
    """Deferred re-weighting's fields of a run config (algorithms.md §1.6): ``reweight`` is hashed when it is on,
    its start and beta when it is ``"drw"``."""

    reweight: str = "none"              # "drw": effective-number class weights from epoch drw_start * epochs
    drw_start: float = 0.8              # fraction of the epochs (LDAM-DRW / CMO: epoch 160 of 200)
    drw_beta: float = 0.9999

    @classmethod
    def check_block(cls, config) -> None:
        if config.reweight not in REWEIGHTS:
            raise ConfigError(f"RunConfig.reweight: {config.reweight!r} is not one of {REWEIGHTS}")
        if not 0 <= config.drw_start <= 1 or not 0 <= config.drw_beta < 1:
            raise ConfigError(f"RunConfig: drw_start is a fraction of the epochs in [0, 1] and drw_beta is in [0, 1); "
                              f"got {config.drw_start!r} and {config.drw_beta!r}")
        if config.reweight == "drw" and config.loss == "cb_bce":
            raise ConfigError("RunConfig.reweight='drw' re-weights ce, bs, ldam or focal; cb_bce has its own class "
                              "weights")

    @classmethod
    def used(cls, config) -> bool:
        return config.reweight != "none"

    @classmethod
    def hashed_fields(cls, config) -> tuple[str, ...]:
        if not cls.used(config):
            return ()
        return ("reweight", "drw_start", "drw_beta") if config.reweight == "drw" else ("reweight",)

    @classmethod
    def loss_kwargs(cls, config, class_counts: Sequence[int]) -> dict:
        if config.reweight != "drw":
            return {}
        return {"drw": DRW(class_counts, int(config.drw_start * config.epochs), config.drw_beta)}


@dataclass(frozen=True)
class LDAMSettings(Settings):
    """LDAM's fields of a run config (algorithms.md §5.3), hashed when ``loss="ldam"``."""

    ldam_max_m: float = 0.5             # LDAM's largest margin (the rarest class's)
    ldam_s: float = 30.0                # LDAM's logit scale

    @classmethod
    def check_block(cls, config) -> None:
        if not config.ldam_max_m > 0 or not config.ldam_s > 0:
            raise ConfigError("RunConfig: ldam_max_m and ldam_s must be > 0")
        if config.loss == "ldam" and config.classifier != "normed":
            raise ConfigError("RunConfig.loss='ldam' needs the cosine classifier: set classifier='normed' (with a "
                              "linear head, LDAM's scale s = 30 blows the logits up)")

    @classmethod
    def used(cls, config) -> bool:
        return config.loss == "ldam"

    @classmethod
    def loss_kwargs(cls, config, class_counts: Sequence[int]) -> dict:
        return {"max_m": config.ldam_max_m, "s": config.ldam_s}


@dataclass(frozen=True)
class FocalSettings(Settings):
    """The focal loss's field of a run config, hashed when ``loss="focal"``."""

    focal_gamma: float = 1.0

    @classmethod
    def check_block(cls, config) -> None:
        if not config.focal_gamma >= 0:
            raise ConfigError("RunConfig: focal_gamma must be >= 0")

    @classmethod
    def used(cls, config) -> bool:
        return config.loss == "focal"

    @classmethod
    def loss_kwargs(cls, config, class_counts: Sequence[int]) -> dict:
        return {"gamma": config.focal_gamma}


class DRW:
    """Deferred re-weighting: no class weights before ``start`` (0-based epoch), effective-number weights
    with ``beta`` from then on (LDAM-DRW / CMO: ``beta = [0, 0.9999][epoch // 160]``)."""

    def __init__(self, class_counts: Sequence[int], start: int, beta: float = 0.9999) -> None:
        if start < 0:
            raise ConfigError(f"the DRW start epoch must be >= 0, got {start}")
        self.start = start
        self.weights = effective_number_weights(class_counts, beta)

    def at(self, epoch: int) -> torch.Tensor | None:
        """The class weights of ``epoch``: None (uniform) before the switch."""
        return self.weights if epoch >= self.start else None


class _PerSample(nn.Module):
    """Shared machinery: optional DRW class weights, applied the way PyTorch's weighted CE normalises them.

    The weights are a (non-persistent) buffer, so ``loss.to(device)`` moves them with the module and a step never
    copies them from the host (the run setup moves every loss to the run's device)."""

    def __init__(self, drw: DRW | None = None) -> None:
        super().__init__()
        self.drw = drw
        self.register_buffer("drw_weights", None if drw is None else drw.weights.clone(), persistent=False)
        self.weight: torch.Tensor | None = None

    def start_epoch(self, epoch: int) -> None:
        self.weight = self.drw_weights if self.drw is not None and self.drw.at(epoch) is not None else None

    def weighted(self, losses: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return losses
        w = self.weight[labels]
        return losses * w * (len(w) / w.sum())


class CrossEntropy(_PerSample):
    """Cross-entropy, one value per sample; class-weighted after the DRW switch when given one."""

    def __init__(self, class_counts: Sequence[int] | None = None, drw: DRW | None = None) -> None:
        super().__init__(drw)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.weighted(F.cross_entropy(logits.float(), labels, reduction="none"), labels)


class BalancedSoftmax(_PerSample):
    """Balanced Softmax (CMO's ``BalancedSoftmaxLoss``): CE on ``logits + log(n_c / N)``. Training only: the
    model's raw logits are what evaluation uses, so the prior is removed at test time by construction."""

    def __init__(self, class_counts: Sequence[int], drw: DRW | None = None) -> None:
        super().__init__(drw)
        counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
        self.register_buffer("log_prior", (counts / counts.sum()).log().float())

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adjusted = logits.float() + self.log_prior.to(logits.device)
        return self.weighted(F.cross_entropy(adjusted, labels, reduction="none"), labels)


def ldam_margins(class_counts: Sequence[int], max_m: float = 0.5) -> torch.Tensor:
    """m_c proportional to n_c^(-1/4), scaled so that the rarest class's margin is ``max_m``."""
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    m = counts.pow(-0.25)
    return (m * (max_m / m.max())).float()


class LDAM(_PerSample):
    """LDAM (Cao et al.): subtract m_y from the target logit, scale every logit by s, then (weighted) CE.

    It expects cosine logits in [-1, 1] from a ``NormedLinear`` head; with s = 30 an unnormalised head's
    logits blow up, so the config refuses ``loss="ldam"`` without ``classifier="normed"``.
    """

    def __init__(self, class_counts: Sequence[int], max_m: float = 0.5, s: float = 30.0,
                 drw: DRW | None = None) -> None:
        super().__init__(drw)
        if not max_m > 0 or not s > 0:
            raise ConfigError(f"LDAM needs max_m > 0 and s > 0, got {max_m} and {s}")
        self.s = s
        self.register_buffer("margins", ldam_margins(class_counts, max_m))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = logits.float()
        margin = F.one_hot(labels, x.shape[1]).float() * self.margins.to(x.device)[labels][:, None]
        return self.weighted(F.cross_entropy(self.s * (x - margin), labels, reduction="none"), labels)


class Focal(_PerSample):
    """Focal loss as LDAM-DRW's code computes it: l = CE with the class weight inside (not normalised),
    p = exp(-l), loss (1 - p)^gamma * l, averaged over the batch."""

    def __init__(self, class_counts: Sequence[int] | None = None, gamma: float = 1.0, drw: DRW | None = None) -> None:
        super().__init__(drw)
        if not gamma >= 0:
            raise ConfigError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        if self.weight is not None:
            ce = ce * self.weight[labels]
        return (1 - torch.exp(-ce)).pow(self.gamma) * ce


def effective_number_weights(class_counts: Sequence[int], beta: float) -> torch.Tensor:
    """Cui et al.'s class weights (1 - beta) / (1 - beta^n_c), normalised to sum to C (algorithms.md §1.6)."""
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    weights = (1.0 - beta) / (1.0 - beta ** counts)
    return (weights / weights.sum() * len(counts)).float()


class ClassBalancedBCE(nn.Module):
    """Weight balancing's "class-balanced loss" (CB_loss, softmax variant), exactly as its code runs it.

    A *binary* cross-entropy on the softmax probabilities against one-hot targets, each sample weighted
    by its target class's effective-number weight, averaged over all B x C entries (algorithms.md §2.4):
    ``1/(B C) sum_i w_{y_i} sum_c BCE(p_ic, y_ic)``. Per sample it returns ``w_{y_i} sum_c BCE / C``, so
    the batch mean is the reference value. Its scale is about 1/C of weighted CE, which is why weight
    balancing pairs it with lr 0.01 and weight decay 0.1.
    """

    def __init__(self, class_counts: Sequence[int], beta: float = 0.9999) -> None:
        super().__init__()
        self.register_buffer("weights", effective_number_weights(class_counts, beta))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        probs = logits.float().softmax(dim=1)
        onehot = F.one_hot(labels, probs.shape[1]).float()
        bce = F.binary_cross_entropy(probs, onehot, reduction="none")   # B x C, log clamped at -100 as torch does
        return self.weights.to(logits.device)[labels] * bce.mean(dim=1)


LOSSES: Registry = Registry("loss")
LOSSES.add("ce", CrossEntropy, "cross-entropy")
LOSSES.add("bs", BalancedSoftmax, "Balanced Softmax: CE on logits + log prior (training only)")
# settings: the run-config block whose loss_kwargs the loss is built with
LOSSES.add("ldam", LDAM, "LDAM: margin m_c ~ n_c^(-1/4) (max_m) on the target logit, scale s; needs classifier='normed'",
           settings=LDAMSettings)
LOSSES.add("focal", Focal, "focal loss (1 - p)^gamma * CE, as LDAM-DRW's code computes it", settings=FocalSettings)
LOSSES.add("cb_bce", ClassBalancedBCE,
           "weight balancing's class-balanced loss: BCE on softmax probabilities, effective-number weights")


def build_loss(name: str, class_counts: Sequence[int], **kwargs) -> nn.Module:
    return LOSSES.get(name)(class_counts, **kwargs)
