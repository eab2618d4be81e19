"""PreActResNet18 (He et al. 2016), the fast-AT literature's standard CIFAR-10 model."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cobench import hookimpl
from cobench.api import Model


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))
            if stride != 1 or in_planes != planes
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(x) if self.shortcut is not None else x  # on x, as every reference
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNetNet(nn.Module):
    def __init__(self, num_blocks: tuple[int, ...], num_classes: int, in_channels: int, width: int = 64):
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        layers = []
        for i, n in enumerate(num_blocks):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            for s in [stride] + [1] * (n - 1):
                layers.append(PreActBlock(self.in_planes, planes, s))
                self.in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(self.in_planes)
        self.linear = nn.Linear(self.in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class PreActResNet18(Model):
    """PreActResNet18 (He et al., ECCV 2016) as used by Wong et al. 2020 and successors.

    Follows ``models/preact_resnet.py`` of gortizji/co_features and ``CIFAR10/preact_resnet.py``
    of locuslab/fast_adversarial block for block (the projection shortcut takes the block's
    input ``x``, not ``relu(bn1(x))``). Knowingly differs: global average pooling instead of
    ``avg_pool2d(out, 4)``, the same on 32x32 inputs, so other image sizes work; ``width``
    scales all four stages (64 = the reference).
    """

    name = "preact-resnet18"
    ranges = {"width": ">= 1"}
    paper = "He, Zhang, Ren & Sun, 'Identity mappings in deep residual networks', ECCV 2016"

    def __init__(self, width: int = 64):
        self.width = width

    def build(self, *, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        return PreActResNetNet((2, 2, 2, 2), num_classes, image_shape[0], self.width)


@hookimpl
def register_models(register):
    register(PreActResNet18)
