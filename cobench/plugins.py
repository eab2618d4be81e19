"""The plugin manager: loads built-in and third-party plugins from the ``cobench``
entry-point group and collects what each registers.

Built-ins are declared as entry points in cobench's own ``pyproject.toml`` exactly like a
third-party package's; ``DEFAULT_PLUGINS`` is the same list, used when cobench runs from a
source tree without installed metadata (and checked against pyproject by the tests).
Each entry point is loaded on its own, so one broken plugin is reported, not fatal.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .api import KINDS, Component
from .errors import PluginError, UnknownComponentError

ENTRY_POINT_GROUP = "cobench"

#: entry-point name -> module, mirrored in pyproject.toml's [project.entry-points.cobench]
DEFAULT_PLUGINS: dict[str, str] = {
    # --- datasets
    "cobench.datasets.digits": "cobench.datasets.digits",
    "cobench.datasets.torchvision_sets": "cobench.datasets.torchvision_sets",
    "cobench.datasets.imagefolder": "cobench.datasets.imagefolder",
    "cobench.datasets.npz": "cobench.datasets.npz",
    # --- end datasets
    # --- injections
    "cobench.injections.none": "cobench.injections.none",
    "cobench.injections.dct": "cobench.injections.dct",
    "cobench.injections.rademacher": "cobench.injections.rademacher",
    "cobench.injections.perp": "cobench.injections.perp",
    "cobench.injections.lowpass": "cobench.injections.lowpass",
    # --- end injections
    # --- methods
    "cobench.methods.fgsm": "cobench.methods.fgsm",
    "cobench.methods.n_fgsm": "cobench.methods.n_fgsm",
    "cobench.methods.pgd": "cobench.methods.pgd",
    "cobench.methods.rs_fgsm": "cobench.methods.rs_fgsm",
    "cobench.methods.grad_align": "cobench.methods.grad_align",
    "cobench.methods.free": "cobench.methods.free",
    "cobench.methods.zerograd": "cobench.methods.zerograd",
    "cobench.methods.kim": "cobench.methods.kim",
    "cobench.methods.llr": "cobench.methods.llr",
    "cobench.methods.cure": "cobench.methods.cure",
    "cobench.methods.elle": "cobench.methods.elle",
    "cobench.methods.fgsm_pgi": "cobench.methods.fgsm_pgi",
    "cobench.methods.gat": "cobench.methods.gat",
    # --- end methods
    # --- evaluators
    "cobench.evaluators.accuracy": "cobench.evaluators.accuracy",
    "cobench.evaluators.co_detection": "cobench.evaluators.co_detection",
    "cobench.evaluators.auto_attack": "cobench.evaluators.auto_attack",
    "cobench.evaluators.analyses": "cobench.evaluators.analyses",
    "cobench.evaluators.linearity": "cobench.evaluators.linearity",
    # --- end evaluators
    # --- models
    "cobench.models.small_cnn": "cobench.models.small_cnn",
    "cobench.models.preact_resnet": "cobench.models.preact_resnet",
    "cobench.models.timm_models": "cobench.models.timm_models",
    "cobench.models.wide_resnet": "cobench.models.wide_resnet",
    # --- end models
    # --- executors
    "cobench.executors.local": "cobench.executors.local",
    "cobench.executors.local_parallel": "cobench.executors.local_parallel",
    "cobench.executors.ray_executor": "cobench.executors.ray_executor",
    "cobench.executors.submitit_executor": "cobench.executors.submitit_executor",
    # --- end executors
    # --- commands
    "cobench.leaderboard.commands": "cobench.leaderboard.commands",
    # --- end commands
}


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

    components: dict[str, dict[str, type[Component]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    owners: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def get(self, kind: str, name: str) -> type[Component]:
        try:
            return self.components[kind][name]
        except KeyError:
            raise UnknownComponentError(kind.rstrip("s"), name, self.components[kind]) from None

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
    def load_entry_points(self) -> None:
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
        # running from a source tree without installed metadata: fall back to the same list
        for name, modname in DEFAULT_PLUGINS.items():
            if not self.pm.has_plugin(name) and name not in self.failures:
                try:
                    self.register(importlib.import_module(modname), name, None)
                except Exception as exc:
                    self.failures[name] = f"failed to import {modname}: {type(exc).__name__}: {exc}"

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
        for kind, base in KINDS.items():
            hook = getattr(self.pm.hook, f"register_{kind}")
            for impl in reversed(hook.get_hookimpls()):  # registration order
                plugin_name = impl.plugin_name

                def register(cls: type, _kind: str = kind, _base: type = base, _plugin: str = plugin_name) -> None:
                    if not (isinstance(cls, type) and issubclass(cls, _base)):
                        raise PluginError(f"plugin {_plugin!r} registered {cls!r}, which is not a {_base.__name__} subclass")
                    if not cls.name:
                        raise PluginError(f"plugin {_plugin!r} registered {cls.__name__} without a name")
                    prior = reg.owners[_kind].get(cls.name)
                    if prior is not None:
                        raise PluginError(
                            f"{_kind[:-1]} name {cls.name!r} is registered by both plugin {prior!r} and plugin {_plugin!r}; "
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
                        f"plugin {plugin_name!r} raised while registering {kind}: {type(exc).__name__}: {exc} "
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
                    builtin=name in DEFAULT_PLUGINS,
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
        if os.environ.get("COBENCH_LOAD_PLUGINS", "").lower() == "none":
            for name, modname in DEFAULT_PLUGINS.items():
                manager.register(importlib.import_module(modname), name, None)
        else:
            manager.load_entry_points()
        _manager = manager
    return _manager


def reset_plugin_manager() -> None:
    """Forget the loaded plugins (tests, and after installing a plugin in-process)."""
    global _manager
    _manager = None
