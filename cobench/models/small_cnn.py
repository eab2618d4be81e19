"""A small, fast CNN for CPU runs on the embedded dataset."""

from __future__ import annotations

from torch import nn

from cobench import hookimpl
from cobench.api import Model


class SmallCNN(Model):
    """Three conv-BN-ReLU blocks (width w, 2w, 4w), global average pooling and a linear head."""

    name = "small-cnn"
    ranges = {"width": ">= 1"}

    def __init__(self, width: int = 32):
        self.width = width

    def build(self, *, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        c, w = image_shape[0], self.width

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        return nn.Sequential(
            *block(c, w, 1),
            *block(w, 2 * w, 2),
            *block(2 * w, 4 * w, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * w, num_classes),
        )


@hookimpl
def register_models(register):
    register(SmallCNN)
