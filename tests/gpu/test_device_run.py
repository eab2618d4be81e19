"""The prepared GPU run (benchmarks/device_run.py): its tiny mode takes the device's steps on the CPU.

The end-to-end tests run ``bash benchmarks/device_run.sh run`` as the device call would: offline
installs into a fresh ``--site`` (cobench from a copy of the tree, no dependencies, no build
isolation; and the carried wheels whose distribution this Python lacks: here a wheel the test
builds, since the test environment has jsonschema and pyautoattack already, which the run then
leaves alone and names), then gpu_check's tiny setting or a study grid, then the packing of
``$OUT``. What they do not exercise is the image itself (Python 3.12, torch 2.11) and a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.data.formats import write_cifar10

ROOT = Path(__file__).resolve().parents[2]


def load():
    """benchmarks/device_run.py as a module (registered: its dataclasses look themselves up)."""
    name = "cobench_device_run"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "device_run.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def probe_wheel(folder: Path) -> Path:
    """A real, minimal wheel of a distribution this Python lacks (as the image lacks jsonschema)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "cobench_probe_dist-0.1-py3-none-any.whl"
    info = "cobench_probe_dist-0.1.dist-info"
    files = {
        "cobench_probe_dist.py": "ANSWER = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: cobench-probe-dist\nVersion: 0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n")
    return wheel


def device_run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_run.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def returned(out: Path) -> list[Path]:
    """What a device call would bring back from $OUT: at most 8 plain files with plain names."""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 1 <= len(files) <= 8, files
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in files), files
    return files


def archived(out: Path) -> dict[str, bytes]:
    with tarfile.open(out / "device-run.tar.gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.mark.slow
def test_the_tiny_mode_installs_offline_runs_gpu_check_and_packs_the_results(tmp_path):
    write_cifar10(tmp_path / "data", n_train=40, n_test=20)
    probe_wheel(tmp_path / "whl")
    done = device_run(
        "run",
        "--out",
        str(tmp_path / "out"),
        "--tiny",
        "--device",
        "cpu",
        "--data-dir",
        str(tmp_path / "data"),
        "--wheels",
        str(tmp_path / "whl"),
        "--site",
        str(tmp_path / "site"),
        "--budget-s",
        "300",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {p.name for p in returned(tmp_path / "out")} == {
        "device-run.tar.gz",
        "run.log",
        "summary.txt",
        "environment.txt",
    }
    site = tmp_path / "site"
    assert (site / "cobench_probe_dist.py").exists() and list(site.glob("cobench-*.dist-info"))
    env = (tmp_path / "out" / "environment.txt").read_text()
    assert "installed from whl/: cobench_probe_dist-0.1-py3-none-any.whl" in env and "torch" in env
    files = archived(tmp_path / "out")
    report = json.loads(files["device-run/check/gpu_check-cpu.json"])
    assert set(report["sections"]) == {"speed", "cells_per_device", "pgd", "determinism"}
    assert not any({"error", "skipped", "stopped"} & set(s) for s in report["sections"].values()), report
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert summary.startswith("gpu_check: exit 0") and "decisions differing: 0" in summary


@pytest.mark.slow
def test_the_study_mode_runs_a_grid_with_cells_sharing_the_device(tmp_path):
    write_cifar10(tmp_path / "data", n_train=40, n_test=20)
    grid = tmp_path / "study.toml"
    grid.write_text(
        textwrap.dedent(
            """
            [grid]
            datasets = ["digits"]
            models = ["small-cnn"]
            methods = ["fgsm"]
            eps = [8]
            seeds = [0, 1]
            evaluators = ["clean"]

            [training]
            epochs = 1
            probe_size = 32

            [params.models.small-cnn]
            width = 4

            [params.datasets.digits]
            size = 8
            """
        )
    )
    done = device_run(
        "run",
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        "--data-dir",
        str(tmp_path / "data"),
        "--wheels",
        str(tmp_path / "none"),
        "--site",
        str(tmp_path / "site"),
        "--study",
        str(grid),
        "--cells-per-device",
        "2",
        "--budget-s",
        "300",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    returned(tmp_path / "out")
    assert "2 of 2 cell result(s) ok" in (tmp_path / "out" / "summary.txt").read_text()
    results = [json.loads(data) for name, data in archived(tmp_path / "out").items() if name.endswith(".json")]
    cells = [r for r in results if r.get("status") == "ok"]
    assert len(cells) == 2
    assert {
        (r["provenance"]["execution"]["executor"], r["provenance"]["execution"]["cells_per_device"]) for r in cells
    } == {("local-parallel", 2)}


def test_a_run_past_its_budget_is_stopped_and_keeps_its_output(tmp_path):
    device_run_module = load()
    script = "import time\nprint('first', flush=True)\ntime.sleep(60)\nprint('never')\n"
    finished = device_run_module.run_within(
        [sys.executable, "-c", script], dict(os.environ), tmp_path / "run.log", budget_s=2, grace_s=5
    )
    assert finished.stopped and finished.seconds < 30 and finished.returncode != 0
    assert (tmp_path / "run.log").read_text().startswith("first")


def test_a_run_without_its_data_is_refused_in_one_line(tmp_path, capsys):
    assert load().main(["run", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("device_run: no CIFAR-10 data at") and err.count("\n") == 1


def test_the_wheels_that_travel_are_the_dependencies_the_image_lacks():
    dr = load()
    required = {dr.requirement_name(r) for r in dr.project_requirements()} - {None}
    assert required - dr.image_packages() == {"jsonschema", "pyautoattack"}
    assert dr.missing_from_image(dr.project_requirements()) == []
    assert dr.requirement_name("tomli>=2; python_version < '3.11'") is None  # the image's Python is 3.12
    assert dr.requirement_name("typing-extensions>=4.4.0; python_version < '3.13'") == "typing-extensions"
    assert dr.requirement_name("coverage; extra == 'test'") is None
    assert dr.missing_from_image(["attrs>=22", "referencing>=0.28", "left-pad>=1"]) == ["left-pad"]


def test_a_slimmed_wheel_leaves_out_its_examples_and_its_record_matches(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    names = ["pkg/__init__.py", "pkg/examples/model.pt", "pkg-1.0.dist-info/METADATA", "pkg-1.0.dist-info/RECORD"]
    with zipfile.ZipFile(wheel, "w") as z:
        for name in names[:-1]:
            z.writestr(name, "x")
        z.writestr(names[-1], "".join(f"{n},sha256=abc,1\n" for n in names[:-1]) + f"{names[-1]},,\n")
    assert load().slim_wheel(wheel, ("pkg/examples/",)) == 1
    with zipfile.ZipFile(wheel) as z:
        assert sorted(z.namelist()) == sorted(n for n in names if "examples" not in n)
        assert "examples" not in z.read("pkg-1.0.dist-info/RECORD").decode()


def test_what_travels_counts_tracked_untracked_and_carried_files_not_ignored_ones(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/.whl/\n/junk/\n")
    (tmp_path / "tracked.txt").write_text("a" * 100)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    (tmp_path / "untracked.txt").write_text("b" * 10)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "big").write_text("c" * 10_000)
    (tmp_path / ".whl").mkdir()
    (tmp_path / ".whl" / "w.whl").write_text("d" * 1000)
    size = load().travel_bytes(tmp_path, (".whl",))
    assert size == 100 + 10 + 1000 + len("/.whl/\n/junk/\n")


def test_the_device_command_is_one_short_line():
    dr = load()
    for cmd in (dr.device_command(360), dr.device_command(360, "benchmarks/device_study.toml", 4)):
        assert len(cmd) <= dr.COMMAND_LIMIT and "\n" not in cmd and '--out "$OUT"' in cmd
    assert "--study benchmarks/device_study.toml --cells-per-device 4" in dr.device_command(
        360, "benchmarks/device_study.toml", 4
    )
