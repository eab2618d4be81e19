"""The induced-CO study page quotes the committed cells: its generated part is never edited by hand."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"study_{name}", ROOT / "studies" / "induced_co" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def load_render():
    return load_script("render")


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


def test_the_pair_sits_at_the_largest_eps_where_plain_fgsm_held():
    axis = load_script("axis")
    # the shape `cobench boundary -o` writes: one threshold per beta (beta 0 = the plain data)
    found = {"thresholds": [{"beta": 0.0, "below_eps": 8.0, "threshold_eps": 10.0}]}
    assert axis.pair_eps(found) == 8.0
    with pytest.raises(SystemExit, match="collapses at every eps"):
        axis.pair_eps({"thresholds": [{"beta": 0.0, "below_eps": None, "threshold_eps": 6.0}]})


def test_the_pair_betas_follow_co_features_configs_and_readme_example():
    axis = load_script("axis")
    assert axis.pair_betas(8.0) == [5.0, 8.0]  # configs: eps 8 with beta 8; 2/3 of it rounds to 5
    assert axis.pair_betas(6.0) == [4.0, 6.0]  # README example: eps 6 with beta 4


def test_the_page_reads_every_axis_folder_that_axis_py_writes():
    render, axis = load_render(), load_script("axis")
    assert {folder for folder, _ in axis.AXES.values()} <= set(render.FOLDERS)


def test_the_curves_show_a_collapsed_case_once():
    render = load_render()
    s = render.Setting(width=16, images=5000, epochs=100)

    def cell(eps, beta, co, traced):
        curves = {"probe_no_injection_acc": [0.5]} if traced else {}
        return render.StudyCell("x", s, eps, beta, 0, co, 5 if co else None, 30, 0.5, 0.5, 0.5, 60.0, curves)

    plain_co = cell(10, 0, True, traced=True)  # recorded per epoch, and collapsed
    held = cell(8, 5, False, traced=True)
    assert render.traced_cells([held, plain_co, cell(14, 0, True, traced=True)]) == [
        held,
        plain_co,
        cell(14, 0, True, traced=True),
    ]
    old_co = cell(10, 4, True, traced=False)  # from before the per-epoch feature curves
    assert render.traced_cells([held, old_co]) == [held, old_co]


@pytest.mark.parametrize(("flags", "trains_pair"), [([], True), (["--threshold-only"], False)])
def test_axis_searches_the_threshold_then_trains_the_pair_unless_told_not_to(tmp_path, monkeypatch, flags, trains_pair):
    axis = load_script("axis")
    calls: list[list[str]] = []

    def fake_run(cmd, check):
        calls.append(cmd)
        if "boundary" in cmd:  # what `cobench boundary -o` writes
            out = Path(cmd[cmd.index("-o") + 1])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"thresholds": [{"beta": 0.0, "below_eps": 10.0, "threshold_eps": 12.0}]}))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(axis.subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "argv", ["axis.py", "width", *flags])
    axis.main()
    assert [c[3] for c in calls] == (["boundary", "run"] if trains_pair else ["boundary"])
    assert "models.preact-resnet18.width=32" in calls[0]
    if trains_pair:
        run = calls[1]
        assert run[run.index("--eps") + 1] == "10" and run[run.index("--beta") + 1] == "7,10"


def test_the_readme_quotes_the_study_pages_cell_count_and_hours():
    page_text = (ROOT / "docs" / "induced-co.md").read_text()
    page = re.search(r"(\d+) cells in \d+ settings, ([\d.]+) h of recorded build time", page_text)
    readme = re.search(r"\((\d+)\s+cells, ([\d.]+) h on one\s+core", (ROOT / "README.md").read_text())
    assert page and readme, "the page states its cells and hours, and the README quotes them"
    assert int(readme[1]) == int(page[1]), "the README's cell count is the study page's"
    assert float(readme[2]) == round(float(page[2]), 1), "the README's hours are the study page's, to 0.1 h"
