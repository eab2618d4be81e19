"""Published figures beside the board's own numbers ([[leaderboard.published]]), in every format."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cobench.errors import ConfigError
from cobench.leaderboard.spec import load_leaderboard
from tests.leaderboard.conftest import lb_cli

FIGURES = """
[[leaderboard.published]]
method = "fgsm"
eps = 8
metric = "pgd_acc"
value = 50.0
seeds = 5
approximate = true
source = "a README, line 3"
differs = "30 epochs, not 2"

[[leaderboard.published]]
method = "n-fgsm"
eps = 16
injection = "low-freq"
beta = 8
metric = "clean_acc"
value = 40.5
std = 1.5
checkpoint = "best"
source = "a paper, Table 2"
differs = "early-stopped model; this board keeps the last"
"""


def render(toml):
    out = lb_cli(["render", str(toml)])
    assert out.exit_code == 0, out.output
    lb = load_leaderboard(toml)
    return (
        lb,
        lb.output("md").read_text(),
        list(csv.DictReader(io.StringIO(lb.output("csv").read_text()))),
        json.loads(lb.output("json").read_text()),
        lb.output("html").read_text(),
    )


@pytest.mark.usefixtures("tables_only")  # tables and text only: figures are checked elsewhere
def test_a_board_without_published_figures_has_no_published_columns(tiny):
    _, md, rows, doc, page = render(tiny)
    assert "published" not in md.lower() and "published" not in rows[0] and "published" not in doc
    assert 'id="published"' not in page


@pytest.mark.usefixtures("tables_only")  # tables and text only: figures are checked elsewhere
def test_published_figures_render_beside_cobench_with_the_difference(tiny):
    tiny.write_text(tiny.read_text() + FIGURES)
    lb, md, rows, doc, page = render(tiny)
    assert len(lb.published) == 2
    fgsm8 = next(r for r in rows if r["method"] == "fgsm" and r["eps"] == "8.0" and r["injection"] == "none")
    ours = 100 * float(fgsm8["pgd_acc_mean"])
    assert fgsm8["published"] == "[1] PGD ≈50"
    assert fgsm8["published_diff"] == f"[1] {ours - 50.0:+.1f}"
    nf16 = next(r for r in rows if r["method"] == "n-fgsm" and r["eps"] == "16.0" and r["injection"] == "low-freq")
    assert nf16["published"] == "[2] clean 40.5 ± 1.5"
    # a row without a figure says "-"
    assert next(r for r in rows if r["method"] == "n-fgsm" and r["eps"] == "8.0")["published"] == "-"
    # JSON: every figure with its source, cobench's number and the difference
    figs = {f["ref"]: f for f in doc["published"]}
    assert figs[1]["source"] == "a README, line 3" and figs[1]["seeds"] == 5 and figs[1]["approximate"] is True
    assert figs[1]["cobench"] == pytest.approx(ours, abs=1e-4)
    assert figs[1]["difference"] == pytest.approx(ours - 50.0, abs=1e-4)
    assert figs[2]["checkpoint"] == "best" and figs[2]["compared_with"] == "clean_acc"  # no best_ column here
    row = next(r for r in doc["rows"] if r["method"] == "fgsm" and r["eps"] == 8.0 and r["injection"] == "none")
    assert [f["ref"] for f in row["published_figures"]] == [1]
    # Markdown: the column in the table and the figures with their sources and differences
    assert "| published % [ref] | cobench − published (points) |" in md
    section = md.split("## Published figures\n", 1)[1]
    line = next(ln for ln in section.splitlines() if ln.startswith("| 1 |"))
    assert line == (
        f"| 1 | fgsm | 8/255 | none | PGD | ≈50 | 5 | last | {ours:.1f} | "
        + f"{ours - 50.0:+.1f}".replace("+", "\\+")
        + " | "
        "a README, line 3 | 30 epochs, not 2 |"
    )
    # HTML: the same table, sortable
    assert 'id="published"' in page and "a paper, Table 2" in page and 'data-key="published_diff"' in page
    # and the committed outputs are what a fresh render gives
    assert lb_cli(["check", str(tiny)]).exit_code == 0


@pytest.mark.parametrize(
    "entry, fragment",
    [
        ('method = "fgsm"\neps = 8\nmetric = "pgd_acc"\nvalue = 50', "source is required"),
        ('method = "pgd"\neps = 8\nmetric = "pgd_acc"\nvalue = 50\nsource = "x"', "not one of the board's methods"),
        ('method = "fgsm"\neps = 4\nmetric = "pgd_acc"\nvalue = 50\nsource = "x"', "not one of the board's eps"),
        (
            'method = "fgsm"\neps = 8\nmetric = "pgd50_10_acc"\nvalue = 50\nsource = "x"',
            "not one of the board's accuracy",
        ),
        ('method = "fgsm"\neps = 8\nmetric = "pgd_acc"\nvalue = 0.5\nsource = "x"\ncheckpoint = "final"', "checkpoint"),
        ('method = "fgsm"\neps = 8\nmetric = "pgd_acc"\nvalue = 150\nsource = "x"', "percentage"),
    ],
)
def test_bad_published_entries_give_clear_errors(tmp_path, entry, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(
        f'[leaderboard]\ntitle = "x"\n[grid]\nmethods = ["fgsm"]\neps = [8]\n[[leaderboard.published]]\n{entry}\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_leaderboard(path)
    assert fragment in str(exc.value.message)
