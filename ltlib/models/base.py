"""The one interface every model shares: ``features(x)``, a separate ``classifier`` and a ``forward`` built from them."""
from __future__ import annotations

import torch
import torch.nn as nn


class FeatureClassifier(nn.Module):
    """A model split into ``features(x)`` (pooled, ``B x num_features``) and ``classifier``.

    Subclasses define ``features`` and set ``self.classifier`` and ``self.num_features``; CC-SAM, classifier
    retraining and the feature analyses reach the two parts by these names.
    """

    classifier: nn.Module
    num_features: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor,
                with_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The logits; with ``with_features``, ``(features, logits)`` of one call, which a compiled or DDP
        wrapper passes through whole (CC-SAM's step needs both)."""
        feats = self.features(x)
        logits = self.classifier(feats)
        return (feats, logits) if with_features else logits
