"""What a backbone's features look like: a 2-D PCA of the test features and how well each class stands apart.

PCA is computed here by an SVD of the centred features (a few lines; no extra dependency). Each model gets its own
basis, so the pictures compare shapes, not coordinates. The separation of class c is the mean distance of its test
features to their class mean over the distance from that mean to the nearest other class mean: below 1 the class's
cloud is tighter than the gap to its neighbour, above 1 it overlaps. Measured in the full feature space, not in 2-D.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.datasets import LongTailData
from ..runs.evaluate import predict_features
from ..runs.experiment import Run
from ..runs.setup import eval_options


@dataclass(frozen=True)
class FeatureView:
    """A model's test features projected on their first two principal components, with what they explain."""

    points: np.ndarray         # n x 2
    labels: np.ndarray         # n
    explained: tuple[float, float]   # share of the variance on each axis
    separation: np.ndarray     # per class: spread / distance to the nearest other class mean (lower: apart)


def test_features(run: Run, data: LongTailData) -> torch.Tensor:
    """The pooled features (the classifier's input) of ``run``'s model on the test set."""
    return predict_features(run.model, data.test.images, **eval_options(run.config, data))


def class_separation(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """Per class: mean distance of its features to their mean over the distance to the nearest other class mean."""
    feats = features.double()
    means = torch.stack([feats[labels == c].mean(0) for c in range(num_classes)])
    spread = torch.stack([(feats[labels == c] - means[c]).norm(dim=1).mean() for c in range(num_classes)])
    gaps = torch.cdist(means, means)
    gaps.fill_diagonal_(float("inf"))
    return (spread / gaps.min(1).values).numpy()


def pca_view(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> FeatureView:
    """The first two principal components of ``features`` (n x d) and each class's separation."""
    centred = features.double() - features.double().mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    share = (s ** 2 / (s ** 2).sum()).numpy()
    return FeatureView(points=(centred @ vh[:2].T).numpy(), labels=labels.cpu().numpy(),
                       explained=(float(share[0]), float(share[1] if len(share) > 1 else 0.0)),
                       separation=class_separation(features.cpu(), labels.cpu(), num_classes))


def feature_view(run: Run, data: LongTailData) -> FeatureView:
    """:func:`pca_view` of ``run``'s test features."""
    return pca_view(test_features(run, data).cpu(), data.test.labels.cpu(), data.num_classes)
