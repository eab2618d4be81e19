"""Reusing one batch's BatchNorm statistics on later forward passes, without updating the
running statistics (the ``get_stats``/``set_stats`` mechanism of deepmind's local linearity
regulariser, ``local_linearity_regularizer/batchnorm.py``).

LLR evaluates the model at many perturbed copies of a minibatch. The reference normalises
each of those passes with the *clean* minibatch's batch statistics (``test_local_stats=True,
set_stats=...``) and with ``is_training=False``, so only the nominal pass moves the moving
averages. :class:`BatchStatistics` does the same for torch ``BatchNorm`` layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class BatchStatistics:
    """Record every BatchNorm layer's normalising statistics on one pass, replay them on later ones.

    ``with stats.record(): model(x)`` stores, per layer, the mean and (biased) variance it
    normalised with: the batch's own in train mode (kept differentiable, as in the reference),
    the running ones in eval mode. ``with stats.reuse(): model(x2)`` normalises every layer with
    those stored values and leaves running statistics and ``num_batches_tracked`` untouched.
    """

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        self.stats: dict[nn.Module, tuple[Tensor, Tensor]] = {}

    @contextlib.contextmanager
    def record(self) -> Iterator[None]:
        def store(layer: _BatchNorm, inputs: tuple[Tensor, ...]) -> None:
            x = inputs[0]
            if layer.training or layer.running_mean is None:
                dims = [d for d in range(x.dim()) if d != 1]
                self.stats[layer] = (x.mean(dims), x.var(dims, unbiased=False))
            else:
                assert layer.running_var is not None  # registered together with running_mean
                self.stats[layer] = (layer.running_mean, layer.running_var)

        handles = [layer.register_forward_pre_hook(store) for layer in self.layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @contextlib.contextmanager
    def reuse(self) -> Iterator[None]:
        missing = [layer for layer in self.layers if layer not in self.stats]
        if missing:
            raise RuntimeError("BatchStatistics.reuse() before a recorded forward pass through every BatchNorm layer")

        def normalise(layer: _BatchNorm, inputs: tuple[Tensor, ...], output: Any) -> Tensor:
            x = inputs[0]
            shape = [1, -1] + [1] * (x.dim() - 2)
            mean, var = (s.view(shape) for s in self.stats[layer])  # differentiable, unlike F.batch_norm's
            out = (x - mean) / (var + layer.eps).sqrt()
            if layer.affine:
                out = out * layer.weight.view(shape) + layer.bias.view(shape)
            return out

        modes = [layer.training for layer in self.layers]
        handles = [layer.register_forward_hook(normalise) for layer in self.layers]
        for layer in self.layers:
            layer.eval()  # the layer's own forward must not update its running statistics
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for layer, mode in zip(self.layers, modes):
                layer.train(mode)
