"""Logit adjustment (Menon et al., ICLR 2021; the google-research ``logit_adjustment`` code): the logit-adjusted loss,
and the post-hoc adjustment of a trained model's logits.

With pi the training class frequencies (the code's ``base_probs``) and the offset ``log(pi^tau + 1e-12)``:

* the loss (``loss="la"``, ``la_tau``, 1 by default) is CE on ``logits + offset``; evaluation uses the raw logits.
  At tau = 1 it is Balanced Softmax (``loss="bs"``) up to the 1e-12;
* post hoc, a model trained with plain CE predicts ``argmax(logits - offset)`` (:func:`adjust_logits`); tau is
  chosen on the validation split (:func:`ltlib.analysis.posthoc.logit_adjustment_sweep`).

The 1e-12 sits inside the log, added to pi^tau, as the released code has it (both ``utils.build_loss_fn`` and the
post-hoc branch of ``main.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.settings import Settings
from .losses import DRW, LOSSES, _PerSample


def log_prior(class_counts: Sequence[int], tau: float) -> torch.Tensor:
    """``log(pi^tau + 1e-12)`` per class, pi = n_c / N (float32, computed in float64)."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau < 0:
        raise ConfigError(f"logit adjustment's tau must be a finite number >= 0 (0 = no adjustment), got {tau!r}")
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    return (counts / counts.sum()).pow(tau).add(1e-12).log().float()


def adjust_logits(logits: torch.Tensor, class_counts: Sequence[int], tau: float = 1.0) -> torch.Tensor:
    """Post-hoc logit adjustment: ``logits - log(pi^tau + 1e-12)``, which favours the rare classes."""
    return logits.float() - log_prior(class_counts, tau).to(logits.device)


class LogitAdjustedLoss(_PerSample):
    """CE on ``logits + log(pi^tau + 1e-12)``, one value per sample (DRW-weighted after the switch when given)."""

    def __init__(self, class_counts: Sequence[int], tau: float = 1.0, drw: DRW | None = None) -> None:
        super().__init__(drw)
        self.register_buffer("offset", log_prior(class_counts, tau))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adjusted = logits.float() + self.offset.to(logits.device)
        return self.weighted(F.cross_entropy(adjusted, labels, reduction="none"), labels)


@dataclass(frozen=True)
class LASettings(Settings):
    """Logit adjustment's field of a run config, hashed when ``loss="la"``."""

    la_tau: float = 1.0                 # the temperature of the prior in the loss (the paper's default, 1)

    @classmethod
    def check_block(cls, config) -> None:
        if not config.la_tau >= 0 or not math.isfinite(config.la_tau):
            raise ConfigError(f"RunConfig.la_tau: logit adjustment's tau must be a finite number >= 0, "
                              f"got {config.la_tau!r}")

    @classmethod
    def used(cls, config) -> bool:
        return config.loss == "la"

    @classmethod
    def loss_kwargs(cls, config, class_counts: Sequence[int]) -> dict:
        return {"tau": config.la_tau}


LOSSES.add("la", LogitAdjustedLoss, "logit-adjusted loss (Menon et al.): CE on logits + log(pi^tau + 1e-12), tau la_tau",
           settings=LASettings)
