"""Weight balancing's (and ImbSAM's) "ResNet-34": torchvision ResNet-34 with a CIFAR stem.

conv1 becomes a 3x3 stride-1 convolution, the max-pool is skipped and the head is
``Linear(512, C)`` (21,328,292 parameters at C=100; algorithms.md §1.4 C). It is a much larger
network than the 0.47M-parameter ResNet-32 that LDAM-DRW, CMO and CC-SAM use.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.determinism import global_average_pool
from .base import FeatureClassifier
from .heads import build_classifier


class ResNet34WB(FeatureClassifier):
    def __init__(self, num_classes: int = 100, in_channels: int = 3, classifier: str = "linear") -> None:
        super().__init__()
        from torchvision.models import resnet34  # imported here: it costs every ltlib import ~2 s

        net = resnet34(weights=None)  # torchvision's init: Kaiming fan_out convs, BN gamma 1
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)  # default PyTorch init, as in WB
        self.conv1, self.bn1 = net.conv1, net.bn1
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.num_features = 512
        self.classifier = build_classifier(classifier, 512, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return global_average_pool(out)  # WB: avg_pool2d(4) on the 4x4 map
