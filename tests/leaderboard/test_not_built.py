"""Boards defined ahead of their (GPU) run: check/render skip them; build --dry-run estimates them."""
from __future__ import annotations

import re
from pathlib import Path

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


def test_shipped_cifar10_boards_are_defined_and_skipped_until_built():
    boards = sorted((ROOT / "leaderboards").glob("cifar10-*.toml"))
    assert boards
    out = lb_cli(["check", *map(str, boards)])
    assert out.exit_code == 0, out.output
    assert out.output.count("not built yet") == len(boards)


def test_dry_run_prints_cells_and_device_hours_from_measured_steps(tmp_path):
    toml = defined_only(tmp_path)
    out = lb_cli(["build", str(toml), "--dry-run", "--device", "cpu", "--measure-steps", "1"])
    assert out.exit_code == 0, out.output
    assert "defined: 16 cells, 0 finished, 16 to train" in out.output
    per_step = dict(re.findall(r"^  (\S+): ([0-9.]+) s/step$", out.output, re.M))
    assert set(per_step) == {"fgsm", "n-fgsm"} and all(float(v) > 0 for v in per_step.values())
    hours = float(re.search(r"estimate: ([0-9.]+) device-hours on cpu for 16 cells", out.output).group(1))
    assert hours > 0
    assert not (tmp_path / "results").exists()  # nothing trained
