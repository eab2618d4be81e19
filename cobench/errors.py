"""Exceptions whose messages are meant for the user, not for a traceback."""

from __future__ import annotations

from collections.abc import Iterable

import click


class CobenchError(click.ClickException):
    """A user-facing error: the CLI prints the message and exits non-zero, no traceback."""

    exit_code = 2


class UnknownComponentError(CobenchError):
    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid) if valid else '(none installed)'}")
        self.kind, self.name, self.valid = kind, name, valid


class ConfigError(CobenchError):
    """A grid, parameter or value that is out of range or malformed."""


class PluginError(CobenchError):
    """A plugin that failed to load, raised while registering, or clashes with another."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the cell is recorded as failed."""

    def __init__(self, epoch: int, step: int, value: float):
        super().__init__(
            f"non-finite training loss ({value}) at epoch {epoch}, step {step}; "
            "lower the learning rate or check the method's hyperparameters"
        )
        self.epoch, self.step, self.value = epoch, step, value
