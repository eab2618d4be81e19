"""Rendering: tables from stored results, aggregation over seeds, protocol checks,
third-party submissions, staleness, plots."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import statistics

import pytest

from cobench.errors import ConfigError
from cobench.grid.cell import Cell
from cobench.leaderboard.outputs import stale_files
from cobench.leaderboard.spec import load_leaderboard
from cobench.store.digest import with_digest
from tests.leaderboard.conftest import edit_result, find_result, lb_cli, result_paths


def md_rows(md: str, setting_title: str) -> dict[tuple[str, str], dict[str, str]]:
    """{(method, eps): {column header: cell}} of the Markdown table under ``## setting_title``
    (a board shows only the accuracy columns its results report, so columns are found by name)."""
    section = md.split(f"## {setting_title}\n", 1)[1].split("\n## ", 1)[0]
    table = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| ---")]
    header = [c.strip() for c in table[0].strip("|").split(" | ")]
    rows = {}
    for ln in table[1:]:
        cells = [c.strip() for c in ln.strip("|").split(" | ")]
        rows[(cells[1], cells[2])] = dict(zip(header, cells, strict=True))
    return rows


COL = {
    "rank": "rank",
    "clean": "clean %",
    "fgsm": "FGSM %",
    "pgd": "PGD %",
    "aa": "AutoAttack %",
    "co_rate": "CO rate [95% CI]",
    "co_epoch": "CO epoch (median)",
    "cost": "time/step ÷ FGSM",
    "time": "time/step",
    "passes": "forward passes/step",
    "seeds": "seeds",
    "source": "source",
}


def test_build_renders_every_output_and_resumes(tiny):
    lb = load_leaderboard(tiny)
    for ext in ("md", "csv", "json", "html"):
        assert lb.output(ext).is_file()
    md = lb.output("md").read_text()
    assert "Coverage: 16 of 16 grid cells finished, 0 failed, 0 submitted" in md
    assert set(md_rows(md, "No injection")) == {(m, e) for m in ("fgsm", "n-fgsm") for e in ("8/255", "16/255")}
    assert set(md_rows(md, "Injection low-freq, beta = 8/255")) == set(md_rows(md, "No injection"))
    before = {p: p.read_bytes() for p in tiny.parent.glob("tiny.*")}
    again = lb_cli(["build", str(tiny), "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert "0 cells run, 16 already finished" in again.output
    assert {p: p.read_bytes() for p in tiny.parent.glob("tiny.*") if p.suffix != ".html"} == {
        p: b for p, b in before.items() if p.suffix != ".html"
    }
    assert stale_files(lb) == []


@pytest.mark.usefixtures("tables_only")  # rows and text only: figures are checked below
def test_table_is_mean_and_std_over_seeds_of_the_stored_results(tiny):
    """Editing stored results changes the table, to hand-computed values."""
    s0, s1 = find_result(tiny, "fgsm", 8.0, seed=0)[0], find_result(tiny, "fgsm", 8.0, seed=1)[0]
    edit_result(s0, lambda d: d["metrics"].update(pgd_acc=0.25, clean_acc=0.9, co=1, co_epoch=2, autoattack_acc=0.2))
    edit_result(s1, lambda d: d["metrics"].update(pgd_acc=0.75, clean_acc=0.9, co=0, co_epoch=None, autoattack_acc=0.4))
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 0, out.output
    md = tiny.with_suffix(".md").read_text()
    row = md_rows(md, "No injection")[("fgsm", "8/255")]
    sd = statistics.stdev([0.25, 0.75])
    assert math.isclose(sd, math.sqrt(2 * 0.25**2))  # sample std of two values: |a - b| / sqrt(2)
    assert row[COL["pgd"]] == f"50.0 ± {100 * sd:.1f}" == "50.0 ± 35.4"
    assert row[COL["clean"]] == "90.0 ± 0.0"
    assert row[COL["aa"]] == "30.0 ± 14.1"
    assert (
        row[COL["co_rate"]] == r"50% \[9–91\]" and row[COL["co_epoch"]] == "2"
    )  # Wilson 95% interval of 1/2 (brackets escaped in Markdown)
    # AutoAttack is missing for the other rows: rendered as '-'
    assert md_rows(md, "No injection")[("n-fgsm", "8/255")][COL["aa"]] == "-"
    rec = next(
        r
        for r in csv.DictReader(io.StringIO(tiny.with_suffix(".csv").read_text()))
        if (r["method"], r["eps"], r["injection"]) == ("fgsm", "8.0", "none")
    )
    assert float(rec["pgd_acc_mean"]) == 0.5 and math.isclose(float(rec["pgd_acc_std"]), sd, rel_tol=1e-5)
    doc = json.loads(tiny.with_suffix(".json").read_text())
    assert doc["ranked_by"] == "pgd_acc"  # autoattack_acc is not reported by every row


@pytest.mark.usefixtures("tables_only")  # rows and text only: figures are checked below
def test_cost_relative_to_fgsm_and_median_co_epoch(tiny):
    for seed, t in ((0, 0.010), (1, 0.030)):
        edit_result(find_result(tiny, "fgsm", 16.0, seed=seed)[0], lambda d, t=t: d["cost"].update(time_per_step_s=t))
    for seed, t, ep in ((0, 0.050, 3), (1, 0.070, 6)):
        edit_result(
            find_result(tiny, "n-fgsm", 16.0, seed=seed)[0],
            lambda d, t=t, ep=ep: (d["cost"].update(time_per_step_s=t), d["metrics"].update(co=1, co_epoch=ep)),
        )
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    row = md_rows(tiny.with_suffix(".md").read_text(), "No injection")[("n-fgsm", "16/255")]
    assert row[COL["cost"]] == "3.00"  # mean 0.06 / mean 0.02
    assert row[COL["co_rate"]] == r"100% \[34–100\]" and row[COL["co_epoch"]] == "4.5"
    assert row[COL["time"]] == "60.0 ms" and row[COL["source"]].startswith("built here")


@pytest.mark.usefixtures("tables_only")  # rows and text only: figures are checked below
def test_rows_are_ranked_by_robust_accuracy_within_each_eps(tiny):
    for p in find_result(tiny, "fgsm", 8.0):
        edit_result(p, lambda d: d["metrics"].update(pgd_acc=0.01))
    for p in find_result(tiny, "n-fgsm", 8.0):
        edit_result(p, lambda d: d["metrics"].update(pgd_acc=0.99, clean_acc=1.0))
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    rows = md_rows(tiny.with_suffix(".md").read_text(), "No injection")
    assert rows[("n-fgsm", "8/255")][COL["rank"]] == "1" and rows[("fgsm", "8/255")][COL["rank"]] == "2"


def test_stale_tables_fail_the_check_and_name_the_files(tiny):
    ok = lb_cli(["check", str(tiny)])
    assert ok.exit_code == 0 and "tiny: up to date" in ok.output
    edit_result(find_result(tiny, "n-fgsm", 16.0, seed=1)[0], lambda d: d["metrics"].update(clean_acc=0.123))
    out = lb_cli(["check", str(tiny)])
    assert out.exit_code == 1
    for ext in ("md", "csv", "json", "html"):
        assert f"stale {tiny.with_suffix('.' + ext)}: differs from a fresh render" in out.output
    assert "re-render with: cobench leaderboard render" in out.output
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    assert lb_cli(["check", str(tiny)]).exit_code == 0
    # a hand edit of a committed table, and a missing plot, are stale too
    md = tiny.with_suffix(".md")
    md.write_text(md.read_text().replace("Tiny test leaderboard", "Tiny test leaderboard (edited)"))
    (tiny.parent / "plots" / "tiny" / "eps-sweep.png").unlink()
    out = lb_cli(["check", str(tiny)])
    assert out.exit_code == 1 and f"stale {md}" in out.output and "eps-sweep.png: missing" in out.output
    assert f"stale {tiny.with_suffix('.csv')}" not in out.output


def test_plots_are_real_pictures(tiny):
    from matplotlib.image import imread

    plots = sorted((tiny.parent / "plots" / "tiny").glob("*.png"))
    assert [p.name for p in plots] == [
        "co-rate-low-freq.png",
        "curves-low-freq-beta8.png",
        "curves-none.png",
        "eps-sweep.png",
        "heatmap-low-freq.png",
    ]
    for p in plots:
        img = imread(p)
        h, w = img.shape[:2]
        assert h > 200 and w > 300
        colours = {tuple(px) for px in (img[::4, ::4, :3] * 255).astype(int).reshape(-1, 3)}
        assert len(colours) > 20, p.name


@pytest.mark.usefixtures("tables_only")  # rows and text only: figures are checked below
def test_third_party_submission_of_a_new_method_joins_the_table(tiny, tmp_path):
    """A result of a method the leaderboard does not define, under its protocol, is a new row."""
    mine = tmp_path / "my-results"
    mine.mkdir()
    for src in find_result(tiny, "n-fgsm", 16.0):
        data = json.loads(src.read_text())
        data["config"]["method"] = {"name": "my-method", "params": {"gamma": 0.5}}
        data["plugins"]["methods"] = "my_plugin"
        data["provenance"]["components"]["methods"] = {
            "my-method": {"plugin": "my_plugin", "distribution": "cobench-my-method", "version": "0.1.0"}
        }
        data["cell_id"] = data["config_hash"] = Cell.from_config(data["config"]).cell_id
        (mine / f"my-method-seed{data['seed']}.json").write_text(json.dumps(with_digest(data)))
    checked = lb_cli(["validate", str(mine), "--leaderboard", str(tiny)])
    assert checked.exit_code == 0 and "2 result file(s) valid; they follow" in checked.output, checked.output
    shutil.copytree(mine, tiny.parent / "results" / "tiny" / "submissions")
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 0, out.output
    md = tiny.with_suffix(".md").read_text()
    assert ("my-method", "16/255") in md_rows(md, "No injection")
    assert "2 submitted by third parties" in md
    assert "**my-method** (plugin my\\_plugin from cobench-my-method 0.1.0, submitted): gamma=0.5" in md
    assert (
        md_rows(md, "No injection")[("my-method", "16/255")][COL["source"]]
        == "submitted: cobench-my-method 0.1.0, unverified"
    )


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda c: c["training"].update(epochs=5), "config.training.epochs is 5, the leaderboard uses 2"),
        (lambda c: c.update(eps=4.0), "has eps 4/255; leaderboard 'tiny' uses eps 8, 16"),
        (lambda c: c["evaluators"].pop(), "config.evaluators is"),
        (
            lambda c: c.update(beta=2.0, injection={"name": "low-freq", "params": {"skip_dc": True}}),
            "uses injection 'low-freq' with beta 2, which is not a setting",
        ),
    ],
)
@pytest.mark.usefixtures("tables_only")  # rows and text only: figures are checked below
def test_submissions_under_another_protocol_are_rejected(tiny, mutate, fragment):
    src = find_result(tiny, "fgsm", 8.0, seed=0)[0]
    data = json.loads(src.read_text())
    data["config"]["method"]["name"] = "other-method"
    mutate(data["config"])
    data["cell_id"] = data["config_hash"] = Cell.from_config(data["config"]).cell_id
    outside = tiny.parent / "other.json"
    outside.write_text(json.dumps(with_digest(data)))  # re-signed: an edit without it fails validate on its own
    assert lb_cli(["validate", str(outside)]).exit_code == 0  # schema-valid ...
    out = lb_cli(["validate", str(outside), "--leaderboard", str(tiny)])
    assert out.exit_code == 2 and fragment in out.output, out.output  # ... but not this leaderboard's protocol
    bad = tiny.parent / "results" / "tiny" / "other.json"
    outside.rename(bad)
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 2 and str(bad) in out.output and fragment in out.output, out.output


@pytest.mark.usefixtures("tables_only")  # rows and text only: figures are checked below
def test_a_grid_method_with_other_parameters_is_rejected(tiny):
    src = find_result(tiny, "fgsm", 8.0, seed=0)[0]
    data = json.loads(src.read_text())
    data["config"]["method"]["params"]["alpha"] = 1.25
    data["cell_id"] = data["config_hash"] = Cell.from_config(data["config"]).cell_id
    bad = tiny.parent / "results" / "tiny" / "fgsm-alpha.json"
    bad.write_text(json.dumps(data))
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 2
    assert (
        "is a 'fgsm' run that is not a cell of leaderboard 'tiny': config.method.params.alpha is 1.25, "
        "the leaderboard uses 1.0" in out.output
    )


@pytest.mark.usefixtures("tables_only")  # rows and text only: figures are checked below
def test_duplicate_results_are_rejected(tiny):
    src = result_paths(tiny)[0]
    copy = src.with_name("copy-of-" + src.name)
    copy.write_text(src.read_text())
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 2 and "duplicates" in out.output and "keep one of them" in out.output


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[leaderboard]\ntitel = "x"\n', "unknown [leaderboard] key(s) titel; valid keys: title, description"),
        (
            '[leaderboard]\ntitle = "x"\n[grid]\ndatasets = ["digits", "cifar10"]\n',
            "a leaderboard has exactly one dataset",
        ),
        ("[leaderboard]\nrank_by = []\n", "rank_by must be a non-empty list"),
        ('[leaderboard]\nresults_dir = "/abs"\n', "results_dir must be a path relative to the TOML file"),
        ("[grid\n", "is not valid TOML"),
    ],
)
def test_bad_leaderboard_files_give_clear_errors(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as exc:
        load_leaderboard(path)
    assert fragment in str(exc.value.message)


def test_render_without_results_says_so(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text('[leaderboard]\ntitle = "empty"\n[grid]\nmethods = ["fgsm"]\neps = [8]\n')
    out = lb_cli(["render", str(path)])
    assert out.exit_code == 0, out.output
    assert "not built yet" in out.output  # a board with no results is skipped, not rendered empty
    assert not path.with_suffix(".md").exists()


def test_committed_figures_are_shown_on_every_page(tiny):
    """A board can show committed images beside its tables (a boundary search's phase diagram)."""
    import base64

    png = (tiny.parent / "plots" / "tiny").glob("*.png").__next__().read_bytes()
    (tiny.parent / "searches").mkdir()
    (tiny.parent / "searches" / "phase.png").write_bytes(png)
    text = tiny.read_text().replace(
        'description = "Two fast methods, two epochs."',
        'description = "Two fast methods, two epochs."\n'
        'figures = [{ path = "searches/phase.png", caption = "Where FGSM collapses: the **search**." }]',
    )
    tiny.write_text(text)
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 0, out.output
    md = tiny.with_suffix(".md").read_text()
    assert "## Figures\n\n![Where FGSM collapses: the **search**.](searches/phase.png)" in md
    assert json.loads(tiny.with_suffix(".json").read_text())["figures"] == [
        {"path": "searches/phase.png", "caption": "Where FGSM collapses: the **search**."}
    ]
    page = tiny.with_suffix(".html").read_text()
    assert base64.b64encode(png).decode("ascii") in page and "the <strong>search</strong>." in page
    assert lb_cli(["check", str(tiny)]).exit_code == 0
    tiny.write_text(text.replace("searches/phase.png", "searches/missing.png"))
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code != 0 and "figures: 'searches/missing.png' is not a file next to the TOML" in out.output


def test_protocol_lines_shorten_sha256_digests_but_keep_other_strings():
    from cobench.leaderboard.render.text import fmt_params

    digest = "sha256:" + "ab" * 32
    text = fmt_params({"fingerprints": {"test_batch": digest}, "name": "sha256:short", "n": 3})
    assert text == 'fingerprints={"test_batch": "sha256:abababababab..."}, n=3, name="sha256:short"'


@pytest.mark.usefixtures("tables_only")  # rows and text only: figures are checked below
def test_the_coverage_line_states_the_wall_time_the_grid_cells_recorded(tiny):
    """Each cell's last run, plus what a resumed cell's interrupted runs had trained."""
    paths = result_paths(tiny)
    for p in paths:
        edit_result(p, lambda d: d.update(wall_time_s=450.0))
    edit_result(paths[0], lambda d: d["cost"].update(wall_before_resume_s=900.0))
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    hours = round((len(paths) * 450.0 + 900.0) / 3600, 2)
    line = next(ln for ln in tiny.with_suffix(".md").read_text().splitlines() if ln.startswith("Coverage:"))
    assert f"recorded {hours:g} h of wall-clock time" in line
    assert json.loads(tiny.with_suffix(".json").read_text())["coverage"]["grid_wall_hours"] == hours


@pytest.mark.usefixtures("tables_only")  # rows and text only: figures are checked below
def test_the_build_time_counts_the_searches_behind_the_grid_once_per_cell(tiny):
    """``searches`` names the result folders of the searches that chose the grid (a boundary
    search): their cells' time is stated beside the grid's, and a search cell the board reuses
    is counted once."""
    paths = result_paths(tiny)
    for p in paths:
        edit_result(p, lambda d: d.update(wall_time_s=450.0))
    search = tiny.parent / "results" / "tiny-boundary"
    search.mkdir()
    shutil.copy(paths[0], search / "reused.json")  # the grid reuses this search cell
    shutil.copy(paths[0], search / "beyond.json")  # a cell only the search trained

    def beyond_the_grid(data):  # as the search would have stored a cell at 9/255
        data["config"]["eps"] = 9
        data["cell_id"] = data["config_hash"] = Cell.from_config(data["config"]).cell_id
        data["wall_time_s"] = 900.0

    edit_result(search / "beyond.json", beyond_the_grid)
    text = tiny.read_text()
    tiny.write_text(
        text.replace(
            'description = "Two fast methods, two epochs."',
            'description = "Two fast methods, two epochs."\nsearches = ["results/tiny-boundary"]',
        )
    )
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 0, out.output
    grid_h = round(len(paths) * 450.0 / 3600, 2)
    line = next(ln for ln in tiny.with_suffix(".md").read_text().splitlines() if ln.startswith("Coverage:"))
    assert (
        f"recorded {grid_h:g} h of wall-clock time (a resumed cell's interrupted runs up to the checkpoint it "
        f"resumed from); the 1 further cell of the "
        f"searches behind the grid (results/tiny-boundary) recorded 0.25 h; {round(grid_h + 0.25, 2):g} h in all."
    ) in line
    cov = json.loads(tiny.with_suffix(".json").read_text())["coverage"]
    assert (cov["search_cells"], cov["search_wall_hours"]) == (1, 0.25)
    assert "results/tiny-boundary) recorded 0.25 h" in tiny.with_suffix(".html").read_text()
    assert lb_cli(["check", str(tiny)]).exit_code == 0
    for bad, message in [
        ('searches = ["results/nowhere"]', "searches: 'results/nowhere' is not a folder next to the TOML"),
        ('searches = "results/tiny-boundary"', "searches must be a list of distinct result folders"),
    ]:
        tiny.write_text(text.replace('description = "Two fast methods, two epochs."', f'description = "x"\n{bad}'))
        out = lb_cli(["render", str(tiny)])
        assert out.exit_code != 0 and message in out.output
