"""Small models, data and checks shared by the method tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cobench.attacks import uniform_like

EPS = 8 / 255


def linear_model(seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).to(dtype)


def smooth_model(seed: int = 0) -> nn.Module:
    """A float64 tanh MLP: smooth, so finite differences of gradient regularizers are accurate."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 3)).double()


def data(seed: int = 0, n: int = 16, dtype=torch.float32, saturate: bool = True) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64).to(dtype)
    if saturate:
        x[:2] = 0.0  # saturated pixels exercise the [0,1] clamp
        x[2:4] = 1.0
    return x, torch.randint(0, 3, (n,), generator=g)


def interior(x: Tensor) -> Tensor:
    """Mask of pixels far enough from 0 and 1 that no image clamping can happen at radius 2*EPS."""
    return (x > 3 * EPS) & (x < 1 - 3 * EPS)


class Capture(nn.Module):
    """Wraps a model, remembering each input and the train/eval mode of each call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.inputs: list[Tensor] = []
        self.modes: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x.detach().clone())
        self.modes.append(self.training)
        return self.model(x)


class Draws:
    """Replays the uniform draws a RecordingStep seeded with ``seed`` hands out, in order."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def uniform(self, like: Tensor, low: float, high: float) -> Tensor:
        return uniform_like(like, low, high, self.g)


def check_param_gradient(
    fn: Callable[[], Tensor], model: nn.Module, coords: int = 6, h: float = 1e-6, rtol: float = 1e-4, atol: float = 1e-8
) -> None:
    """Autograd gradient of ``fn()`` w.r.t. the model's parameters vs central finite differences
    on a few coordinates of every parameter tensor (the model must be float64)."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(fn(), params)
    g = torch.Generator().manual_seed(0)
    for p, gp in zip(params, grads):
        flat, gflat = p.data.view(-1), gp.reshape(-1)
        for i in torch.randint(0, flat.numel(), (coords,), generator=g).tolist():
            old = flat[i].item()
            flat[i] = old + h
            up = fn().item()
            flat[i] = old - h
            down = fn().item()
            flat[i] = old
            fd = (up - down) / (2 * h)
            assert abs(fd - gflat[i].item()) <= atol + rtol * max(abs(fd), abs(gflat[i].item())), (fd, gflat[i].item())
