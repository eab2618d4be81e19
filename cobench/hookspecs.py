"""The hook specifications every cobench plugin implements a subset of.

Each ``register_*`` hook receives a ``register`` callback. A plugin calls it once per
component it contributes, passing the component *class* (a subclass of the matching
base in :mod:`cobench.api`). Registration is attributed to the plugin that made it, so
``cobench list methods`` can show who owns what and a name clash names both plugins.
"""

from __future__ import annotations

from collections.abc import Callable

import click
import pluggy

hookspec = pluggy.HookspecMarker("cobench")

Register = Callable[[type], None]


@hookspec
def register_datasets(register: Register) -> None:
    """Register :class:`cobench.api.Dataset` subclasses."""


@hookspec
def register_injections(register: Register) -> None:
    """Register :class:`cobench.api.Injection` subclasses (class-wise feature injections)."""


@hookspec
def register_methods(register: Register) -> None:
    """Register :class:`cobench.api.Method` subclasses (adversarial-training methods)."""


@hookspec
def register_evaluators(register: Register) -> None:
    """Register :class:`cobench.api.Evaluator` subclasses."""


@hookspec
def register_models(register: Register) -> None:
    """Register :class:`cobench.api.Model` subclasses (architectures)."""


@hookspec
def register_executors(register: Register) -> None:
    """Register :class:`cobench.api.Executor` subclasses (how grid cells are scheduled)."""


@hookspec
def register_loggers(register: Register) -> None:
    """Register :class:`cobench.api.RunLogger` subclasses (experiment trackers, ``--loggers``)."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add extra sub-commands to the ``cobench`` click group."""
