"""torchvision's ImageNet ResNet-50 and ResNeXt-50 (32x4d), split into ``features`` and a ``classifier``.

The backbones of the ImageNet-LT / iNaturalist-2018 / Places-LT recipes (decoupling, LDAM-DRW, CMO, weight
balancing): torchvision's architecture and initialisation (``weights=None``), the 7x7 stem and max-pool
kept, the 1000-way ``fc`` replaced by the chosen head on the 2048 pooled features.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.determinism import GlobalAveragePool
from .base import FeatureClassifier
from .heads import build_classifier


ARCHS = {"resnet50": "resnet50", "resnext50": "resnext50_32x4d"}   # torchvision.models builders


class TorchvisionResNet(FeatureClassifier):
    def __init__(self, arch: str = "resnet50", num_classes: int = 1000, in_channels: int = 3,
                 classifier: str = "linear") -> None:
        super().__init__()
        import torchvision.models  # imported here: it costs every process that imports ltlib ~2 s

        net = getattr(torchvision.models, ARCHS[arch])(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
        self.num_features = net.fc.in_features
        net.fc = nn.Identity()
        net.avgpool = GlobalAveragePool()    # the same mean; deterministic on CUDA when asked (ltlib.core.determinism)
        self.backbone = net
        self.classifier = build_classifier(classifier, self.num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # stem, four stages, global average pool, flatten
