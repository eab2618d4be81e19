"""The README's test command passes after the README's install (`.[test]` only): a test that needs an
optional extra skips, with the reason, where the extra is absent, and carries the `extras` marker,
which .ci/run selects (`-m extras`) once the extras are installed (issue 32)."""

from __future__ import annotations

import re
from pathlib import Path

from cobench.grid.spec import tomllib  # tomli before Python 3.11

ROOT = Path(__file__).resolve().parents[2]

#: the importable module of each optional extra of pyproject.toml
EXTRA_MODULES = {"ray": "ray", "slurm": "submitit", "tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def test_every_extra_of_pyproject_has_its_module_here():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) - {"test", "dev"} == set(EXTRA_MODULES)


def test_a_test_that_needs_an_extra_skips_with_its_reason_and_is_marked():
    needs = re.compile(r"importorskip\(\s*\"(" + "|".join(EXTRA_MODULES.values()) + r")\"([^)]*)\)")
    found = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        text = path.read_text()
        for match in needs.finditer(text):
            rel = path.relative_to(ROOT).as_posix()
            found[rel] = found.get(rel, 0) + 1
            assert "reason=" in match.group(2), f"{rel}: importorskip({match.group(1)!r}) without a reason"
            assert "pytest.mark.extras" in text, f"{rel} needs the {match.group(1)!r} extra but is not marked `extras`"
        # importing an extra at the top of a test module would fail collection without the extra
        top = re.findall(r"^(?:import|from) (\w+)", text, flags=re.M)
        absent = set(top) & set(EXTRA_MODULES.values())
        assert not absent, f"{path.relative_to(ROOT)} imports {absent} at module level; use pytest.importorskip"
    # the known ones: the Ray executor and address tests, submitit, the run loggers
    assert {
        "tests/inputs/test_run_options.py",
        "tests/scale/test_executors.py",
        "tests/scale/test_submitit.py",
        "tests/tracking/test_loggers.py",
        "tests/tracking/test_wandb.py",
    } <= set(found)
