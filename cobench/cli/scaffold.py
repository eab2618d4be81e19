"""``cobench plugins new NAME``: a working plugin package written from the template shipped
in ``cobench/templates/plugin`` (package data).

Template files are copied with five placeholders replaced: ``__name__`` (the method's name,
``my-method``), ``__module__`` (its import name, ``cobench_my_method``), ``__class__``
(``MyMethod``), ``__dist__`` (``cobench-my-method``) and ``__cobench_version__``.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from cobench import __version__
from cobench.errors import ConfigError

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def placeholders(name: str) -> dict[str, str]:
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"plugin name {name!r} is not valid: use lower-case letters, digits and single dashes, "
            "starting with a letter (e.g. my-method)"
        )
    return {
        "__module__": "cobench_" + name.replace("-", "_"),
        "__class__": "".join(part.capitalize() for part in name.split("-")),
        "__dist__": f"cobench-{name}",
        "__cobench_version__": __version__,
        "__name__": name,
    }


def write_plugin(name: str, parent: Path) -> Path:
    """Write the package for method ``name`` under ``parent``; returns its directory."""
    values = placeholders(name)
    from cobench.plugins import get_plugin_manager

    registry = get_plugin_manager().registry
    if name in registry.components["methods"]:  # its plugin would clash with it on install
        raise ConfigError(
            f"a method named {name!r} is already installed (plugin {registry.owner('methods', name)}); "
            f"a plugin registering it would clash: choose another NAME, e.g. my-{name}"
        )
    target = parent / values["__dist__"]
    if target.exists():
        raise ConfigError(f"{target} already exists; choose another NAME or --dir")
    template = files("cobench") / "templates" / "plugin"
    for source, relative in _walk(template, Path()):
        out = target / _fill(str(relative), values)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_fill(source.read_text(), values))
    return target


def _walk(node, relative: Path):
    for child in node.iterdir():
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            yield from _walk(child, relative / child.name)
        else:
            yield child, relative / child.name


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text
