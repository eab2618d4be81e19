"""Plugin loading: entry points, default list, validation, clashes, broken plugins."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from cobench import hookimpl
from cobench.api import Injection, Method
from cobench.errors import PluginError, UnknownComponentError
from cobench.plugins import BUILTIN_PLUGINS, get_plugin_manager, reset_plugin_manager


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


def test_a_name_clash_names_both_owners_and_lets_the_user_pick(pm):
    pm.register(DuplicatePlugin(), "dup-plugin")
    reg = pm.registry
    assert reg.get("methods", "fgsm") is not _Dup  # the first owner (the built-in) keeps the bare name
    assert reg.get("methods", "dup-plugin/fgsm") is _Dup
    assert reg.get("methods", "cobench.methods.fgsm/fgsm") is reg.get("methods", "fgsm")
    [warning] = pm.warnings()
    assert "cobench.methods.fgsm" in warning and "dup-plugin" in warning and "'dup-plugin/fgsm'" in warning
    assert "COBENCH_LOAD_PLUGINS" in warning


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


def test_plugin_that_raises_while_registering_is_disabled_and_named(pm):
    pm.register(RaisingPlugin(), "raiser")
    assert "fgsm" in pm.registry.names("methods")  # the rest of cobench works
    [warning] = pm.warnings()
    assert "'raiser'" in warning and "boom" in warning and "COBENCH_LOAD_PLUGINS" in warning
    assert not pm.pm.has_plugin("raiser")


class NotAMethod:
    @hookimpl
    def register_methods(self, register):
        register(dict)


def test_registering_a_non_component_disables_the_plugin(pm):
    pm.register(NotAMethod(), "wrong-type")
    assert "fgsm" in pm.registry.names("methods")
    assert "not a Method subclass" in pm.failures["wrong-type"]


class _AnInjection(Injection):
    name = "my-injection"


class WrongKind:
    @hookimpl
    def register_methods(self, register):
        register(_AnInjection)


def test_a_class_registered_under_the_wrong_kind_names_the_right_hook(pm):
    pm.register(WrongKind(), "wrong-kind")
    assert "my-injection" not in pm.registry.names("injections") + pm.registry.names("methods")
    assert "register it from register_injections" in pm.failures["wrong-kind"]


def test_a_builtin_that_breaks_still_raises(pm):
    pm.register(RaisingPlugin(), "cobench.methods.fgsm-like")
    monkey = dict.fromkeys(BUILTIN_PLUGINS + ("cobench.methods.fgsm-like",))
    import cobench.plugins as plugins_module

    original = plugins_module.BUILTIN_PLUGINS
    plugins_module.BUILTIN_PLUGINS = tuple(monkey)
    try:
        with pytest.raises(PluginError, match="boom"):
            _ = pm.registry
    finally:
        plugins_module.BUILTIN_PLUGINS = original


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
    from cobench.api import Injection, Method

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
    installed(
        "cobench-broken", {"broken": "cobench_broken_plugin"}, {"cobench_broken_plugin": "import does_not_exist\n"}
    )
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


MISSPELLED_PLUGIN = """
    from cobench import hookimpl

    @hookimpl
    def register_model(register):
        pass
"""

CLASHING_PLUGIN = GOOD_PLUGIN.replace('name = "clean-training"', 'name = "fgsm"')


def test_misspelled_hook_in_an_entry_point_is_reported_by_every_command(installed):
    from click.testing import CliRunner

    from cobench.cli import cli

    installed("cobench-typo", {"typo": "cobench_typo_plugin"}, {"cobench_typo_plugin": MISSPELLED_PLUGIN})
    for args in (
        ["plugins"],
        ["list", "methods"],
        ["run", "--methods", "fgsm", "--dry-run", "--seeds", "0", "--results-dir", "unused-results"],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, (args, result.output, result.stderr)
        warnings = [line for line in result.stderr.splitlines() if "'typo'" in line]
        assert len(warnings) == 1 and "register_model" in warnings[0] and "COBENCH_LOAD_PLUGINS" in warnings[0], args
    table = CliRunner().invoke(cli, ["plugins"]).output
    assert "typo" in table and "failed:" in table  # the table wraps the message at the terminal's width
    failures = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).stdout)["failures"]
    assert "plugin 'typo' is invalid" in json.dumps(failures) and "register_model" in json.dumps(failures)


def test_clash_with_a_builtin_runs_either_side(installed, tmp_path):
    from click.testing import CliRunner

    from cobench.cli import cli

    installed("cobench-clash", {"clash": "cobench_clash_plugin"}, {"cobench_clash_plugin": CLASHING_PLUGIN})
    result = CliRunner().invoke(
        cli, ["run", "--methods", "clash/fgsm", "--dry-run", "--seeds", "0", "--results-dir", "unused-results"]
    )
    assert result.exit_code == 0, result.stderr
    assert "clash/fgsm" in result.output and "'clash/fgsm' for the other" in result.stderr


def test_unknown_component_names_the_plugin_that_failed_to_import(installed):
    installed(
        "cobench-broken", {"broken": "cobench_broken_plugin"}, {"cobench_broken_plugin": "import does_not_exist\n"}
    )
    with pytest.raises(UnknownComponentError) as info:
        get_plugin_manager().registry.get("methods", "clean-training")
    assert "plugin 'broken' failed to load" in info.value.message and "does_not_exist" in info.value.message


def test_list_shows_each_components_paper():
    from click.testing import CliRunner

    from cobench.cli import cli

    reset_plugin_manager()
    paper = get_plugin_manager().registry.get("methods", "n-fgsm").paper
    assert paper
    result = CliRunner().invoke(cli, ["list", "methods"], terminal_width=400)
    assert result.exit_code == 0 and paper.split(",")[0] in result.output
    assert "paper" in result.output.splitlines()[2]
