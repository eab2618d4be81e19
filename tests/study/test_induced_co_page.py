"""The induced-CO study page quotes the committed cells: its generated part is never edited by hand."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_render():
    spec = importlib.util.spec_from_file_location("study_render", ROOT / "studies" / "induced_co" / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_study_page_is_up_to_date_with_its_cells():
    assert load_render().main(["--check"]) == 0


def test_every_committed_study_cell_is_listed(tmp_path):
    render = load_render()
    cells = render.collect()
    files = [
        p
        for folder in render.FOLDERS
        if (render.RESULTS / folder).is_dir()
        for p in (render.RESULTS / folder).rglob("eps*.json")
        if json.loads(p.read_text())["config"]["injection"]["name"] == "low-freq-pm"
    ]
    assert len(cells) == len(files) > 0
    block, figures = render.generated(cells, tmp_path)
    rows = [line for line in block.splitlines() if line.startswith("| ") and line.endswith("` |")]
    assert len(rows) == len(cells)
    assert all(data.startswith(b"\x89PNG") for data in figures.values())


def test_a_setting_collapsing_below_its_plain_threshold_shows_in_the_thresholds(tmp_path):
    render = load_render()
    s = render.Setting(width=16, images=5000, epochs=30)

    def cell(eps, beta, co):
        return render.StudyCell("x", s, eps, beta, 0, co, 5 if co else None, 30, 0.5, 0.5, 0.5, 60.0, {})

    cells = [cell(6, 0, False), cell(8, 0, False), cell(10, 0, True), cell(6, 4, False), cell(8, 4, True)]
    rows = render.threshold_rows(s, cells)
    assert rows == [f"| {s.label} | 0 | (8, 10] |", f"| {s.label} | 4 | (6, 8] |"]
