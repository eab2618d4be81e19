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
from typing import Any, Literal, overload

import pluggy

from cobench import hookspecs
from cobench.api import Component, Dataset, Evaluator, Executor, Injection, Method, Model, RunLogger
from cobench.errors import PluginError, UnknownComponentError
from cobench.kinds import KIND_NAMES, KINDS, singular
from cobench.kinds import kind as kind_named

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
    "cobench.executors.submitit_executor",
    "cobench.loggers.tensorboard",
    "cobench.loggers.mlflow",
    "cobench.loggers.wandb",
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


#: separates a plugin's name from its component's name in ``PLUGIN/NAME`` (``:`` already means ``name:ARG``)
QUALIFIER = "/"

#: how every warning about a broken plugin ends
LOAD_PLUGINS_HINT = "set COBENCH_LOAD_PLUGINS=none to run with built-ins only"


@dataclass
class Registry:
    """Components of every kind, each attributed to the plugin that registered it.

    ``components[kind][name]`` holds the component a bare name means (the first plugin to
    register it); every component is also reachable as ``PLUGIN/NAME`` (``qualified``), which
    is how a user picks the other side of a name clash.
    """

    components: dict[str, dict[str, type[Component]]] = field(default_factory=lambda: {k: {} for k in KIND_NAMES})
    owners: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KIND_NAMES})
    qualified: dict[str, dict[str, type[Component]]] = field(default_factory=lambda: {k: {} for k in KIND_NAMES})
    #: plugins that failed to load or register: plugin name -> message (so "unknown X" can name them)
    failures: dict[str, str] = field(default_factory=dict)

    # registration checks each component against its kind's base class (cobench.kinds), so a
    # literal kind tells the type checker which base class it gets
    @overload
    def get(self, kind: Literal["datasets"], name: str) -> type[Dataset]: ...
    @overload
    def get(self, kind: Literal["models"], name: str) -> type[Model]: ...
    @overload
    def get(self, kind: Literal["methods"], name: str) -> type[Method]: ...
    @overload
    def get(self, kind: Literal["injections"], name: str) -> type[Injection]: ...
    @overload
    def get(self, kind: Literal["evaluators"], name: str) -> type[Evaluator]: ...
    @overload
    def get(self, kind: Literal["executors"], name: str) -> type[Executor]: ...
    @overload
    def get(self, kind: Literal["loggers"], name: str) -> type[RunLogger]: ...
    @overload
    def get(self, kind: str, name: str) -> type[Component]: ...
    def get(self, kind: str, name: str) -> type[Component]:
        found = self.components[kind].get(name) or self.qualified[kind].get(name)
        if found is not None:
            return found
        error = UnknownComponentError(singular(kind), name, self.components[kind])
        if self.failures:
            # click declares ClickException.message Final; it is a plain attribute, extended here on purpose
            error.message += "; " + "; ".join(  # type: ignore[misc]
                f"plugin {plugin!r} failed to load and may provide it: {msg}" for plugin, msg in self.failures.items()
            )
        raise error

    def owner(self, kind: str, name: str) -> str:
        """The plugin that registered the component ``name`` (bare or ``PLUGIN/NAME``)."""
        if name in self.owners[kind]:
            return self.owners[kind][name]
        return name.partition(QUALIFIER)[0]

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])


class PluginManager:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        #: plugins that failed to load or register: name -> message
        self.failures: dict[str, str] = {}
        #: bare component names registered by two plugins, one message each
        self.clashes: list[str] = []
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
            try:
                self.register(module, ep.name, getattr(ep, "dist", None))
            except PluginError as exc:  # e.g. a misspelled hook
                self.failures[ep.name] = exc.message

    def register(self, plugin: ModuleType | object, name: str, dist: md.Distribution | None = None) -> None:
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            raise PluginError(
                f"plugin {name!r} is invalid: {exc} (hooks: "
                + ", ".join(k.hook for k in KINDS)
                + ", register_commands)"
            ) from None
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
        """Ask every plugin, in registration order, for its components. A third-party plugin
        that breaks (raises, registers a non-component or a nameless one) is unregistered as
        a whole and recorded in ``failures``; a name clash keeps the first owner for the bare
        name and is recorded in ``clashes``. A broken built-in is a bug: it raises."""
        reg = Registry(failures=self.failures)
        self.clashes = []
        hookimpls = {k.plural: {i.plugin_name: i for i in getattr(self.pm.hook, k.hook).get_hookimpls()} for k in KINDS}
        for plugin_name, _ in list(self.pm.list_name_plugin()):
            try:
                staged = [
                    (kind, cls)
                    for kind in KIND_NAMES
                    if plugin_name in hookimpls[kind]
                    for cls in _registrations(hookimpls[kind][plugin_name], kind, plugin_name)
                ]
            except PluginError as exc:
                if plugin_name in BUILTIN_PLUGINS:
                    raise
                self.failures[plugin_name] = exc.message
                self.pm.unregister(name=plugin_name)
                continue
            for kind, cls in staged:
                self._add(reg, kind, cls, plugin_name)
        return reg

    def _add(self, reg: Registry, kind: str, cls: type[Component], plugin_name: str) -> None:
        reg.qualified[kind][f"{plugin_name}{QUALIFIER}{cls.name}"] = cls
        prior = reg.owners[kind].get(cls.name)
        if prior is None:
            reg.components[kind][cls.name] = cls
            reg.owners[kind][cls.name] = plugin_name
            return
        message = (
            f"{singular(kind)} name {cls.name!r} is registered by both plugin {prior!r} and plugin {plugin_name!r}; "
            f"{cls.name!r} means {prior!r}'s, write '{plugin_name}{QUALIFIER}{cls.name}' for the other"
        )
        if plugin_name in BUILTIN_PLUGINS:
            raise PluginError(message)
        self.clashes.append(message)

    def warnings(self) -> list[str]:
        """One line per broken plugin and per name clash, as every command prints them."""
        reg = self.registry
        lines = [f"plugin {name!r} is disabled: {msg} ({LOAD_PLUGINS_HINT})" for name, msg in reg.failures.items()]
        return lines + [f"{msg} ({LOAD_PLUGINS_HINT})" for msg in self.clashes]

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
            rows.append(
                {
                    "name": name,
                    "plugin": reg.owners[kind][name],
                    "summary": cls.summary(),
                    "parameters": cls.parameters(),
                    "paper": cls.paper,
                }
            )
        return rows


def _registrations(impl: Any, kind: str, plugin_name: str) -> list[type[Component]]:
    """The classes one plugin's ``register_<kind>`` hook registers, each checked."""
    expected = kind_named(kind)
    out: list[type[Component]] = []

    def register(cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, expected.base)):
            actual = next((k for k in KINDS if isinstance(cls, type) and issubclass(cls, k.base)), None)
            hint = f" (it is a {actual.base.__name__}: register it from {actual.hook})" if actual else ""
            raise PluginError(
                f"plugin {plugin_name!r} registered {cls!r} from {expected.hook}, "
                f"which is not a {expected.base.__name__} subclass{hint}"
            )
        if not cls.name:
            raise PluginError(f"plugin {plugin_name!r} registered {cls.__name__} without a name")
        out.append(cls)

    try:
        impl.function(register=register)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(
            f"plugin {plugin_name!r} raised while registering {kind}: {type(exc).__name__}: {exc}"
        ) from exc
    return out


_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, loaded on first use.

    ``COBENCH_LOAD_PLUGINS=none`` loads built-ins only (useful to rule out a bad plugin).
    """
    global _manager
    if _manager is None:
        manager = PluginManager()
        manager.load_builtins()
        setting = os.environ.get("COBENCH_LOAD_PLUGINS", "").strip().lower()
        if setting not in ("", "none"):
            raise PluginError(
                f"COBENCH_LOAD_PLUGINS={os.environ['COBENCH_LOAD_PLUGINS']!r} is not valid: set it to "
                "none (built-ins only) or leave it unset (every installed plugin)"
            )
        if setting != "none":
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
