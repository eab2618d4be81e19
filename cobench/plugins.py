"""The plugin manager: loads the built-in plugins from one list and third-party plugins
from the ``cobench`` entry-point group, and collects what each registers.

Built-ins are declared once, in ``BUILTIN_PLUGINS`` (as datasette and llm do): they are
registered the same way as third-party plugins, through the same hooks, but need no
installed metadata. Each plugin is loaded on its own, so one broken plugin is reported,
not fatal.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata as md
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .api import Component
from .errors import PluginError, UnknownComponentError
from .kinds import KIND_NAMES, KINDS, singular

ENTRY_POINT_GROUP = "cobench"

#: the built-in plugin modules; each is registered under its module name
BUILTIN_PLUGINS: tuple[str, ...] = (
    "cobench.datasets.digits",
    "cobench.datasets.torchvision_sets",
    "cobench.datasets.imagefolder",
    "cobench.datasets.npz",
    "cobench.injections.none",
    "cobench.injections.dct",
    "cobench.injections.rademacher",
    "cobench.injections.perp",
    "cobench.injections.lowpass",
    "cobench.methods.fgsm",
    "cobench.methods.n_fgsm",
    "cobench.methods.pgd",
    "cobench.methods.rs_fgsm",
    "cobench.methods.grad_align",
    "cobench.methods.free",
    "cobench.methods.zerograd",
    "cobench.methods.kim",
    "cobench.methods.llr",
    "cobench.methods.cure",
    "cobench.methods.elle",
    "cobench.methods.fgsm_pgi",
    "cobench.methods.gat",
    "cobench.evaluators.accuracy",
    "cobench.evaluators.co_detection",
    "cobench.evaluators.auto_attack",
    "cobench.evaluators.analyses",
    "cobench.evaluators.linearity",
    "cobench.models.small_cnn",
    "cobench.models.preact_resnet",
    "cobench.models.timm_models",
    "cobench.models.wide_resnet",
    "cobench.executors.local",
    "cobench.executors.local_parallel",
    "cobench.executors.ray_executor",
    "cobench.loggers.tensorboard",
    "cobench.loggers.mlflow",
    "cobench.leaderboard.commands",
    "cobench.boundary.commands",
)


@dataclass
class PluginInfo:
    name: str
    version: str | None
    distribution: str | None
    hooks: list[str]
    builtin: bool


@dataclass
class Registry:
    """Components of every kind, each attributed to the plugin that registered it."""

    components: dict[str, dict[str, type[Component]]] = field(default_factory=lambda: {k: {} for k in KIND_NAMES})
    owners: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KIND_NAMES})

    def get(self, kind: str, name: str) -> type[Component]:
        try:
            return self.components[kind][name]
        except KeyError:
            raise UnknownComponentError(singular(kind), name, self.components[kind]) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])


class PluginManager:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        #: plugins that failed to load or register: name -> message
        self.failures: dict[str, str] = {}
        self.dists: dict[str, md.Distribution | None] = {}
        self._registry: Registry | None = None

    # ------------------------------------------------------------------ loading
    def load_builtins(self) -> None:
        """Register every module of ``BUILTIN_PLUGINS`` (a built-in that fails to import is a bug: it raises)."""
        for modname in BUILTIN_PLUGINS:
            if not self.pm.has_plugin(modname):
                self.register(importlib.import_module(modname), modname, _own_distribution())

    def load_entry_points(self) -> None:
        """Register every third-party plugin of the ``cobench`` entry-point group."""
        seen = set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen or self.pm.has_plugin(ep.name):
                continue
            seen.add(ep.name)
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not take cobench down
                self.failures[ep.name] = f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
                continue
            self.register(module, ep.name, getattr(ep, "dist", None))

    def register(self, plugin: ModuleType | object, name: str, dist: md.Distribution | None = None) -> None:
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            raise PluginError(f"plugin {name!r} is invalid: {exc}") from None
        self.dists[name] = dist
        self._registry = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._registry = None

    # ------------------------------------------------------------------ registry
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._collect()
        return self._registry

    def _collect(self) -> Registry:
        reg = Registry()
        for kind in KINDS:
            hook = getattr(self.pm.hook, kind.hook)
            for impl in reversed(hook.get_hookimpls()):  # registration order
                plugin_name = impl.plugin_name

                def register(cls: type, _kind: str = kind.plural, _base: type = kind.base, _plugin: str = plugin_name) -> None:
                    if not (isinstance(cls, type) and issubclass(cls, _base)):
                        raise PluginError(f"plugin {_plugin!r} registered {cls!r}, which is not a {_base.__name__} subclass")
                    if not cls.name:
                        raise PluginError(f"plugin {_plugin!r} registered {cls.__name__} without a name")
                    prior = reg.owners[_kind].get(cls.name)
                    if prior is not None:
                        raise PluginError(
                            f"{singular(_kind)} name {cls.name!r} is registered by both plugin {prior!r} and plugin {_plugin!r}; "
                            "uninstall one of them or rename the component"
                        )
                    reg.components[_kind][cls.name] = cls
                    reg.owners[_kind][cls.name] = _plugin

                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin {plugin_name!r} raised while registering {kind.plural}: {type(exc).__name__}: {exc} "
                        "(set COBENCH_LOAD_PLUGINS=none to run with built-ins only)"
                    ) from exc
        return reg

    # ------------------------------------------------------------------ introspection
    def plugins(self) -> list[PluginInfo]:
        out = []
        for name, plugin in sorted(self.pm.list_name_plugin()):
            dist = self.dists.get(name)
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            out.append(
                PluginInfo(
                    name=name,
                    version=dist.version if dist is not None else None,
                    distribution=dist.metadata["Name"] if dist is not None else None,
                    hooks=hooks,
                    builtin=name in BUILTIN_PLUGINS,
                )
            )
        return out

    def describe(self, kind: str) -> list[dict[str, Any]]:
        reg = self.registry
        rows = []
        for name in reg.names(kind):
            cls = reg.components[kind][name]
            rows.append({
                "name": name,
                "plugin": reg.owners[kind][name],
                "summary": cls.summary(),
                "parameters": cls.parameters(),
                "paper": cls.paper,
            })
        return rows


_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, loaded on first use.

    ``COBENCH_LOAD_PLUGINS=none`` loads built-ins only (useful to rule out a bad plugin).
    """
    global _manager
    if _manager is None:
        manager = PluginManager()
        manager.load_builtins()
        if os.environ.get("COBENCH_LOAD_PLUGINS", "").lower() != "none":
            manager.load_entry_points()
        _manager = manager
    return _manager


@functools.lru_cache(maxsize=1)
def _own_distribution() -> md.Distribution | None:
    """cobench's installed distribution (for the version ``cobench plugins`` shows), if installed."""
    try:
        return md.distribution("cobench")
    except md.PackageNotFoundError:
        return None


def reset_plugin_manager() -> None:
    """Forget the loaded plugins (tests, and after installing a plugin in-process)."""
    global _manager
    _manager = None
