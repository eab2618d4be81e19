"""`cobench plugins new NAME` writes a package that pip installs and whose own tests (the
method contract) pass against the installed entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cobench.cli.scaffold import write_plugin
from cobench.errors import ConfigError
from tests.conftest import cli_run

REPO = Path(__file__).resolve().parents[2]


def test_new_plugin_installs_and_passes_its_own_tests(tmp_path):
    result = cli_run(["plugins", "new", "tmpl-method", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    package = tmp_path / "cobench-tmpl-method"
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(package),
        ],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout


@pytest.mark.parametrize("name", ["My_Method", "1st", "a--b", ""])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="lower-case letters"):
        write_plugin(name, tmp_path)


def test_an_existing_directory_is_never_overwritten(tmp_path):
    write_plugin("twice", tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        write_plugin("twice", tmp_path)
