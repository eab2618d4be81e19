"""A test plugin whose method ends its process inside ``train_step`` (as os._exit, a segfault
or an OOM kill would); the exit code is 7."""
from __future__ import annotations

import os

from cobench import hookimpl
from cobench.api import Method


class ExitsInTrainStep(Method):
    """Ends the process at its first training step."""

    name = "os-exit"

    def train_step(self, batch, ctx):
        os._exit(7)


@hookimpl
def register_methods(register):
    register(ExitsInTrainStep)
