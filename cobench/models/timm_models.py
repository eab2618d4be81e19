"""Any timm architecture by name: ``timm:resnet18``, ``timm:vit_tiny_patch16_224``, ...

Always randomly initialised (``pretrained=False``: no downloads, and pretrained weights
would change the CO dynamics being studied), built with the dataset's number of classes
and input channels. Models that take an input size (ViTs and other fixed-size models) get
the dataset's; the build checks with one forward pass that the model accepts it.
"""

from __future__ import annotations

import difflib
from typing import TypedDict

import torch
from torch import nn

from cobench import hookimpl
from cobench.api import Model
from cobench.errors import ConfigError


class TimmArgs(TypedDict):
    """What every timm model is built with (``timm.create_model``'s keyword arguments)."""

    pretrained: bool
    num_classes: int
    in_chans: int
    drop_rate: float


class TimmModel(Model):
    """Any timm model by name (timm:NAME), randomly initialised, with the dataset's classes and channels."""

    name = "timm"
    ranges = {"drop_rate": (">= 0", "< 1")}
    spec_arg = "model_name"
    paper = "Wightman, PyTorch Image Models (timm), 2019"

    def __init__(self, model_name: str | None = None, drop_rate: float = 0.0):
        self.model_name = model_name
        self.drop_rate = drop_rate

    def build(self, *, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        import timm

        if not self.model_name:
            raise ConfigError("the timm model needs a name: write timm:NAME, e.g. timm:resnet18")
        if not timm.is_model(self.model_name):
            close = difflib.get_close_matches(self.model_name, timm.list_models(), n=5)
            raise ConfigError(
                f"unknown timm model {self.model_name!r}"
                + (f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()")
            )
        c, h, w = image_shape
        kwargs = TimmArgs(pretrained=False, num_classes=num_classes, in_chans=c, drop_rate=self.drop_rate)
        try:
            net = timm.create_model(self.model_name, img_size=(h, w), **kwargs)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise ConfigError(f"timm model {self.model_name!r} could not be built: {exc}") from None
            net = timm.create_model(self.model_name, **kwargs)
        check_forward(net, self.model_name, num_classes, image_shape)
        return net


def check_forward(net: nn.Module, label: str, num_classes: int, image_shape: tuple[int, int, int]) -> None:
    """One eval-mode forward pass on two blank images: the model accepts the input and gives K logits."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *image_shape))
    except Exception as exc:
        raise ConfigError(
            f"model {label!r} does not accept {image_shape[0]}x{image_shape[1]}x{image_shape[2]} "
            f"inputs: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        net.train(was_training)
    if tuple(out.shape) != (2, num_classes):
        raise ConfigError(
            f"model {label!r} returned shape {tuple(out.shape)} for 2 images, expected (2, {num_classes})"
        )


@hookimpl
def register_models(register):
    register(TimmModel)
