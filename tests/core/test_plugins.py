"""Plugin loading: entry points, default list, validation, clashes, broken plugins."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from cobench import hookimpl
from cobench.api import Method
from cobench.errors import PluginError, UnknownComponentError
from cobench.plugins import BUILTIN_PLUGINS, PluginManager, get_plugin_manager, reset_plugin_manager


def test_builtins_load_and_register_every_kind(pm):
    assert not pm.failures
    reg = pm.registry
    for kind in ("datasets", "injections", "methods", "evaluators", "models", "executors"):
        assert reg.names(kind), kind
    assert {"fgsm", "n-fgsm", "pgd"} <= set(reg.names("methods"))
    assert reg.owners["methods"]["fgsm"] == "cobench.methods.fgsm"


def test_unknown_component_lists_valid_names(pm):
    with pytest.raises(UnknownComponentError) as info:
        pm.registry.get("methods", "fgsn")
    msg = str(info.value.message)
    assert "unknown method 'fgsn'" in msg and "fgsm" in msg and "n-fgsm" in msg


class _Dup(Method):
    name = "fgsm"


class DuplicatePlugin:
    @hookimpl
    def register_methods(self, register):
        register(_Dup)


def test_two_plugins_registering_one_name_is_an_error_naming_both(pm):
    pm.register(DuplicatePlugin(), "dup-plugin")
    with pytest.raises(PluginError) as info:
        pm.registry
    assert "cobench.methods.fgsm" in info.value.message and "dup-plugin" in info.value.message


class MisspelledHook:
    @hookimpl
    def register_method(self, register):  # missing the s
        pass


def test_misspelled_hook_is_rejected(pm):
    with pytest.raises(PluginError) as info:
        pm.register(MisspelledHook(), "typo")
    assert "typo" in info.value.message and "register_method" in info.value.message
    assert not pm.pm.has_plugin("typo")


class RaisingPlugin:
    @hookimpl
    def register_methods(self, register):
        raise ValueError("boom")


def test_plugin_that_raises_while_registering_is_named(pm):
    pm.register(RaisingPlugin(), "raiser")
    with pytest.raises(PluginError) as info:
        pm.registry
    assert "raiser" in info.value.message and "boom" in info.value.message


class NotAMethod:
    @hookimpl
    def register_methods(self, register):
        register(dict)


def test_registering_a_non_component_is_an_error(pm):
    pm.register(NotAMethod(), "wrong-type")
    with pytest.raises(PluginError, match="not a Method subclass"):
        pm.registry


def make_distribution(tmp_path: Path, dist_name: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """A real installed-distribution layout (``*.dist-info`` + modules) on a sys.path entry."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    for mod, source in modules.items():
        (site / f"{mod}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist_name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[cobench]\n{lines}\n")
    return site


@pytest.fixture
def installed(tmp_path, monkeypatch):
    def install(dist_name, entry_points, modules):
        site = make_distribution(tmp_path, dist_name, entry_points, modules)
        monkeypatch.syspath_prepend(str(site))
        for mod in modules:
            monkeypatch.delitem(sys.modules, mod, raising=False)
        reset_plugin_manager()
        return site
    return install


GOOD_PLUGIN = """
    import torch.nn.functional as F
    from cobench import hookimpl
    from cobench.api import Method

    class Clean(Method):
        '''Standard (non-adversarial) training.'''
        name = "clean-training"

        def __init__(self, label_smoothing: float = 0.0):
            self.label_smoothing = label_smoothing

        def train_step(self, batch, ctx):
            logits = ctx.model(batch.x)
            ctx.update(F.cross_entropy(logits, batch.y, label_smoothing=self.label_smoothing), logits, batch.y)

    @hookimpl
    def register_methods(register):
        register(Clean)
"""


def test_third_party_entry_point_is_loaded_and_attributed(installed):
    installed("cobench-clean", {"clean": "cobench_clean_plugin"}, {"cobench_clean_plugin": GOOD_PLUGIN})
    pm = get_plugin_manager()
    assert "clean-training" in pm.registry.names("methods")
    assert pm.registry.owners["methods"]["clean-training"] == "clean"
    info = {p.name: p for p in pm.plugins()}["clean"]
    assert info.distribution == "cobench-clean" and info.version == "1.2.3" and not info.builtin
    assert pm.describe("methods")[0]["parameters"] is not None
    assert "label_smoothing" in pm.registry.get("methods", "clean-training").parameters()


def test_broken_entry_point_is_reported_not_fatal(installed):
    installed("cobench-broken", {"broken": "cobench_broken_plugin"}, {"cobench_broken_plugin": "import does_not_exist\n"})
    pm = get_plugin_manager()
    assert "broken" in pm.failures and "does_not_exist" in pm.failures["broken"]
    assert "fgsm" in pm.registry.names("methods")  # built-ins still there


def test_load_plugins_none_env_loads_builtins_only(installed, monkeypatch):
    installed("cobench-clean", {"clean": "cobench_clean_plugin"}, {"cobench_clean_plugin": GOOD_PLUGIN})
    monkeypatch.setenv("COBENCH_LOAD_PLUGINS", "none")
    pm = get_plugin_manager()
    assert "clean-training" not in pm.registry.names("methods")
    assert set(BUILTIN_PLUGINS) == {name for name, _ in pm.pm.list_name_plugin()}


def test_builtins_need_no_installed_metadata(monkeypatch):
    import importlib.metadata as md

    monkeypatch.setattr(md, "entry_points", lambda **kw: [])
    pm = get_plugin_manager()
    assert set(BUILTIN_PLUGINS) == {name for name, _ in pm.pm.list_name_plugin()}
    assert "fgsm" in pm.registry.names("methods")
