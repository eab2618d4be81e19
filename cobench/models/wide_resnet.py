"""WideResNet (Zagoruyko & Komodakis, BMVC 2016), WRN-28-10 as in the adversarial-training
literature (Madry et al. 2018, Rice et al. 2020): pre-activation basic blocks, widths
16, 16k, 32k, 64k, (depth - 4) / 6 blocks per group, global average pooling."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cobench import hookimpl
from cobench.api import Model
from cobench.errors import ConfigError


class WideBasic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal = cin == cout and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(o)  # None exactly when self.equal
        o = self.conv1(o)
        o = F.relu(self.bn2(o))
        if self.dropout > 0:
            o = F.dropout(o, p=self.dropout, training=self.training)
        return self.conv2(o) + shortcut


class WideResNetNet(nn.Module):
    def __init__(self, depth: int, width: int, num_classes: int, in_channels: int, dropout: float = 0.0):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks = []
        cin = widths[0]
        for g, cout in enumerate(widths[1:]):
            for i in range(n):
                blocks.append(WideBasic(cin, cout, (1 if g == 0 else 2) if i == 0 else 1, dropout))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(o, 1).flatten(1))


class WideResNet(Model):
    """WideResNet-depth-width (default WRN-28-10, 36.5M parameters); depth = 6n + 4."""

    name = "wrn-28-10"
    ranges = {"depth": ">= 10", "width": ">= 1", "dropout": (">= 0", "< 1")}
    paper = "Zagoruyko & Komodakis, 'Wide residual networks', BMVC 2016"

    def __init__(self, depth: int = 28, width: int = 10, dropout: float = 0.0):
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"wrn depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth}")
        if width < 1:
            raise ConfigError(f"wrn width must be >= 1, got {width}")
        self.depth, self.width, self.dropout = depth, width, dropout

    def build(self, *, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        return WideResNetNet(self.depth, self.width, num_classes, image_shape[0], self.dropout)


@hookimpl
def register_models(register):
    register(WideResNet)
