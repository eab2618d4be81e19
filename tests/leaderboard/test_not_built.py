"""Boards defined ahead of their (GPU) run: check/render skip them; build --dry-run estimates them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import TINY_TOML, lb_cli

ROOT = Path(__file__).resolve().parents[2]


def defined_only(tmp_path: Path) -> Path:
    toml = tmp_path / "defined.toml"
    toml.write_text(TINY_TOML)
    return toml


def test_check_and_render_skip_a_board_with_no_results_and_no_tables(tmp_path):
    toml = defined_only(tmp_path)
    for command in ("check", "render"):
        out = lb_cli([command, str(toml)])
        assert out.exit_code == 0, out.output
        assert "defined: not built yet" in out.output
    assert [p.name for p in tmp_path.iterdir()] == ["defined.toml"]  # nothing rendered


def test_check_still_fails_when_tables_exist_but_results_are_gone(tiny):
    for p in (tiny.parent / "results").rglob("*.json"):
        p.unlink()
    out = lb_cli(["check", str(tiny)])
    assert out.exit_code == 1 and "not built yet" not in out.output


#: CPU-scale boards whose first cell is still training: not built yet, or up to date once cells are in
BEING_BUILT: set[str] = set()


def test_shipped_cifar10_gpu_boards_are_defined_and_skipped_until_built():
    """The full-data CIFAR-10 boards wait for a GPU; the CPU-scale cifar10-prefix boards are built."""
    boards = sorted(
        p for p in (ROOT / "leaderboards").glob("cifar10-*.toml") if not p.stem.startswith("cifar10-prefix-")
    )
    prefix = sorted((ROOT / "leaderboards").glob("cifar10-prefix-*.toml"))
    built = [p for p in prefix if p.stem not in BEING_BUILT]
    assert boards and built
    out = lb_cli(["check", *map(str, boards + prefix)])
    assert out.exit_code == 0, out.output
    building = [p for p in prefix if p.stem in BEING_BUILT and f"{p.stem}: not built yet" in out.output]
    assert out.output.count("not built yet") == len(boards) + len(building)
    assert all(f"{p.stem}: up to date" in out.output for p in built)


def test_dry_run_prints_cells_and_device_hours_from_measured_steps(tmp_path):
    toml = defined_only(tmp_path)
    again = tmp_path / "again.toml"  # a second board with the same model, methods and batch size
    again.write_text(TINY_TOML.replace("eps = [8, 16]", "eps = [8]"))
    out = lb_cli(["build", str(toml), str(again), "--dry-run", "--device", "cpu", "--measure-steps", "1"])
    assert out.exit_code == 0, out.output
    assert "defined: 16 cells, 0 finished, 16 to train" in out.output
    first, second = out.output.split("again: 8 cells, 0 finished, 8 to train")
    per_step = dict(re.findall(r"^  (\S+): ([0-9.]+) s/step$", first, re.M))
    assert set(per_step) == {"fgsm", "n-fgsm"} and all(float(v) > 0 for v in per_step.values())
    # the second board reuses those measurements: same figures, half the cells, half the hours
    reused = dict(re.findall(r"^  (\S+): ([0-9.]+) s/step \(measured for an earlier board\)$", second, re.M))
    assert reused == per_step
    hours = [float(h) for h in re.findall(r"estimate: ([0-9.e+-]+) device-hours on cpu for (?:16|8) cells", out.output)]
    assert len(hours) == 2 and hours[0] > 0 and hours[1] == pytest.approx(hours[0] / 2, rel=1e-2)
    assert not (tmp_path / "results").exists()  # nothing trained


def test_dry_run_with_no_measured_steps_counts_cells_only(tmp_path):
    out = lb_cli(["build", str(defined_only(tmp_path)), "--dry-run", "--measure-steps", "0"])
    assert out.exit_code == 0, out.output
    assert "defined: 16 cells, 0 finished, 16 to train" in out.output and "s/step" not in out.output
    assert "no device-hours estimate" in out.output


def test_build_without_dry_run_takes_one_board(tmp_path):
    toml = defined_only(tmp_path)
    out = lb_cli(["build", str(toml), str(toml)])
    assert out.exit_code == 2 and "only --dry-run takes several" in out.output
    assert not (tmp_path / "results").exists()
