"""Models. Every model exposes ``features(x)`` and a separate ``classifier`` module."""
from __future__ import annotations

import torch.nn as nn

from ..core.registry import Registry
from .base import FeatureClassifier
from .heads import NormedLinear, build_classifier, classifier_weight, reset_classifier
from .resnet34_wb import ResNet34WB
from .resnet_cifar import ResNetCifar
from .resnet_imagenet import TorchvisionResNet


MODELS: Registry = Registry("model")
MODELS.add("resnet32", lambda **kw: ResNetCifar(5, **kw),
           "LDAM-DRW ResNet-32 (3x5 BasicBlocks, option-A shortcuts, 0.46M params at width 1)")
MODELS.add("resnet20", lambda **kw: ResNetCifar(3, **kw), "the same family with 3x3 BasicBlocks")
MODELS.add("resnet34_wb", lambda width=1.0, **kw: ResNet34WB(**kw),
           "weight balancing / ImbSAM 'ResNet-34': torchvision ResNet-34, 3x3 stem, no max-pool (21.3M params)")
MODELS.add("resnet50", lambda width=1.0, **kw: TorchvisionResNet("resnet50", **kw),
           "torchvision ResNet-50 (ImageNet-LT / iNaturalist / Places-LT recipes; 23.5M params + the head)")
MODELS.add("resnext50", lambda width=1.0, **kw: TorchvisionResNet("resnext50", **kw),
           "torchvision ResNeXt-50 32x4d (the decoupling / CMO ImageNet-LT backbone; 23.0M params + the head)")


def build_model(name: str, num_classes: int, in_channels: int = 3, width: float = 1.0,
                classifier: str = "linear") -> nn.Module:
    """Build a registered model; ``width`` applies to the CIFAR ResNets only."""
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, width=width, classifier=classifier)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "FeatureClassifier", "NormedLinear", "ResNet34WB", "ResNetCifar", "TorchvisionResNet",
           "build_classifier", "build_model", "classifier_weight", "count_parameters", "reset_classifier"]
