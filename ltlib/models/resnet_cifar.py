"""LDAM-DRW-style ResNet for 32x32 (and 28x28) inputs, with option-A (parameter-free) shortcuts.

ResNet-32 = 3 stages x 5 BasicBlocks at 16 / 32 / 64 channels (464,154 parameters at C=10,
470,004 at C=100; algorithms.md §1.4 A). Two additions, both off at their defaults:

* ``in_channels``: Fashion-MNIST is fed natively as 1 x 28 x 28 through a 1-channel stem (no padding
  to 32, no channel replication). The stages then work at 28, 14 and 7 pixels; global pooling makes
  the head independent of the size. This costs 0.76x the FLOPs of 32x32x3 input.
* ``width``: scales every stage (0.5 -> 8 / 16 / 32 channels), used by the CPU ``quick`` profile.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.determinism import global_average_pool
from ..core.errors import ConfigError
from .base import FeatureClassifier
from .heads import build_classifier


class ShortcutA(nn.Module):
    """Option A: subsample by 2 and zero-pad the channels (no parameters), as in LDAM-DRW."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = ShortcutA(planes) if stride != 1 or in_planes != planes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place where exact: BN's backward needs its input, not its output (as torchvision does)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out, inplace=True)


class ResNetCifar(FeatureClassifier):
    """A CIFAR ResNet split into ``features(x)`` (pooled, ``B x 64*width``) and ``classifier``."""

    def __init__(self, blocks_per_stage: int = 5, num_classes: int = 10, in_channels: int = 3,
                 width: float = 1.0, classifier: str = "linear") -> None:
        super().__init__()
        base = 16 * width
        if base != int(base) or int(base) % 2 or base < 2:
            raise ConfigError(f"width {width} gives {base} stem channels; option-A shortcuts need an even "
                              "integer (e.g. width 0.25, 0.5, 1, 2)")
        widths = [int(base), 2 * int(base), 4 * int(base)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, in_planes = [], widths[0]
        for i, planes in enumerate(widths):
            layers = []
            for j in range(blocks_per_stage):
                layers.append(BasicBlock(in_planes, planes, 2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.num_features = widths[-1]
        self.classifier = build_classifier(classifier, self.num_features, num_classes)
        for m in self.modules():  # LDAM-DRW's _weights_init: Kaiming normal (fan_in, gain sqrt 2)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.layer3(self.layer2(self.layer1(out)))
        return global_average_pool(out)
