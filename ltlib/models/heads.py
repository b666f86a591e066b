"""Classifier heads. ``NormedLinear`` is LDAM-DRW's cosine classifier (logits in [-1, 1])."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import ConfigError


class NormedLinear(nn.Module):
    """Cosine-similarity classifier: ``normalize(x) @ normalize_columns(W)``, no bias.

    The weight is stored as ``in_features x out_features`` and initialised as LDAM-DRW does:
    uniform(-1, 1), then each column rescaled to unit norm. LDAM's loss needs this head (notebook 05).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)

    def class_weights(self) -> torch.Tensor:
        """The per-class weight vectors as rows (``num_classes x in_features``)."""
        return self.weight.t()


def build_classifier(kind: str, in_features: int, num_classes: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "normed":
        return NormedLinear(in_features, num_classes)
    raise ConfigError(f"unknown classifier {kind!r}: use 'linear' or 'normed'")


def reset_classifier(classifier: nn.Module) -> None:
    """Re-initialise a head as the models initialise it (Kaiming normal rows for a linear head, as in LDAM-DRW)."""
    classifier.reset_parameters()
    if isinstance(classifier, nn.Linear):
        nn.init.kaiming_normal_(classifier.weight)


def classifier_weight(classifier: nn.Module) -> torch.Tensor:
    """Per-class weight rows (``C x d``) of a linear or normed head."""
    if isinstance(classifier, NormedLinear):
        return classifier.class_weights()
    return classifier.weight
