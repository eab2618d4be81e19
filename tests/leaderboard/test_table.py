"""``cobench leaderboard table`` and ``readme``: a board's rows as a short table built from its
rendered JSON, and the README's tables written by it between marker comments (``--check`` fails
when one is stale)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cobench.leaderboard.render.prose import RenderedRow, render
from tests.leaderboard.conftest import lb_cli

ROOT = Path(__file__).resolve().parents[2]
LABELS = '--label fgsm=FGSM-AT --label n-fgsm=N-FGSM --label "pgd=PGD-AT (3 steps)"'


def row(method: str, eps: float, injection: str = "none", beta: float = 0.0, **over) -> dict:
    base = {
        "method": method,
        "eps": eps,
        "injection": injection,
        "beta": beta,
        "seeds": 2,
        "clean_acc_mean": 0.9,
        "clean_acc_std": 0.01,
        "pgd_acc_mean": 0.5,
        "pgd_acc_std": 0.02,
        "co_rate": 0.0,
        "co_epoch_median": None,
        "flagged": False,
    }
    return base | over


def board(*rows: dict) -> list[RenderedRow]:
    return [RenderedRow.from_json(r) for r in rows]


def test_the_readme_tables_are_up_to_date_with_the_committed_boards():
    out = lb_cli(["readme", str(ROOT / "README.md"), "--check"])
    assert out.exit_code == 0, out.output
    assert "2 table(s) up to date" in out.output


def test_a_stale_table_fails_the_check_and_a_rewrite_mends_it(tmp_path):
    (tmp_path / "leaderboards").mkdir()
    shutil.copy(ROOT / "leaderboards" / "cifar10-prefix-fast-at.json", tmp_path / "leaderboards")
    readme = tmp_path / "README.md"
    readme.write_text(
        f"Intro.\n\n<!-- cobench leaderboard table cifar10-prefix-fast-at {LABELS} -->\n\n| old |\n\n<!-- end -->\n\nEnd.\n"
    )
    stale = lb_cli(["readme", str(readme), "--check"])
    assert stale.exit_code == 1
    assert f"stale {readme}:3: table cifar10-prefix-fast-at" in stale.output
    assert readme.read_text().count("| old |") == 1  # --check writes nothing
    assert lb_cli(["readme", str(readme)]).exit_code == 0
    text = readme.read_text()
    assert text.startswith("Intro.\n\n<!-- cobench leaderboard table") and text.endswith("<!-- end -->\n\nEnd.\n")
    assert (
        "| FGSM-AT | 16/255 | 3 | 49.9 ± 6.6 | 21.9 ± 13.6 | **0.0 ± 0.0** | **0.0 ± 0.0** | **3 of 3 (6)** |" in text
    )
    assert "| old |" not in text
    assert lb_cli(["readme", str(readme), "--check"]).exit_code == 0
    assert lb_cli(["readme", str(readme)]).output.strip().endswith("1 table(s), 0 rewritten")


def test_the_table_command_reads_a_toml_json_or_name_and_prints_csv():
    by_name = lb_cli(["table", "cifar10-prefix-injected", "--label", "fgsm=FGSM-AT"])
    by_toml = lb_cli(["table", "leaderboards/cifar10-prefix-injected.toml", "--label", "fgsm=FGSM-AT"])
    assert by_name.exit_code == 0 and by_name.output == by_toml.output
    assert by_name.output.splitlines()[0] == (
        "| method | eps | beta | seeds | clean % | FGSM % | PGD-50-10 % | carrier % | no-injection % | CO (median epoch) |"
    )
    assert "| FGSM-AT | 8/255 | 8/255 | 3 |" in by_name.output and "| n-fgsm | 8/255 |" in by_name.output
    lines = lb_cli(["table", "leaderboards/cifar10-prefix-injected.json", "--format", "csv"]).output.splitlines()
    assert lines[0] == "method,eps,beta,seeds,clean %,FGSM %,PGD-50-10 %,carrier %,no-injection %,CO (median epoch)"
    assert lines[1] == "fgsm,8/255,8/255,3,70.3 ± 1.9,24.6 ± 1.8,18.9 ± 0.7,30.0 ± 20.0,49.9 ± 1.4,0 of 3"


def test_the_figures_are_the_board_json_rounded():
    committed = json.loads((ROOT / "leaderboards" / "digits-small-cnn.json").read_text())
    lines = render(board(*committed["rows"]), fmt="csv").splitlines()
    assert len(lines) == 1 + len(committed["rows"])
    first = min(committed["rows"], key=lambda r: (r["eps"], r["method"]))
    cells = lines[1].split(",")
    assert cells[0] == first["method"] and cells[1] == f"{first['eps']:g}/255"
    assert cells[3] == f"{100 * first['clean_acc_mean']:.1f} ± {100 * first['clean_acc_std']:.1f}"


def test_injections_beta_flags_and_missing_figures():
    text = render(
        board(
            row("fgsm", 8, "low-freq", 4, co_rate=0.5, co_epoch_median=3.0, flagged=True),
            row("fgsm", 8, pgd_acc_mean=None, pgd_acc_std=None, seeds=1),
        )
    )
    assert text.splitlines() == [
        "| method | injection | eps | beta | seeds | clean % | PGD % | CO (median epoch) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| fgsm | none | 8/255 | - | 1 | 90.0 | - | 0 of 1 |",
        "| fgsm ⚠ | low-freq | 8/255 | 4/255 | 2 | 90.0 ± 1.0 | **50.0 ± 2.0** | **1 of 2 (3)** |",
    ]


def test_a_board_without_co_detection_has_no_co_column():
    text = render(board(row("pgd", 16, co_rate=None), row("fgsm", 16, co_rate=None)))
    assert text.splitlines()[0] == "| method | eps | seeds | clean % | PGD % |"
    assert text.splitlines()[2].startswith("| fgsm |")


def test_bad_input_is_one_clear_line(tmp_path):
    missing = lb_cli(["table", "no-such-board"])
    assert missing.exit_code == 2 and "board 'no-such-board': no rendered board at" in missing.output
    label = lb_cli(["table", "cifar10-prefix-injected", "--label", "FGSM-AT"])
    assert label.exit_code == 2 and "--label 'FGSM-AT': expected METHOD=TEXT" in label.output
    (tmp_path / "leaderboards").mkdir()
    (tmp_path / "leaderboards" / "broken.json").write_text('{"rows": [{"method": "fgsm"}]}')
    broken = lb_cli(["table", str(tmp_path / "leaderboards" / "broken.json")])
    assert broken.exit_code == 2 and "broken.json is not a rendered board (a row without 'injection')" in broken.output
    open_block = tmp_path / "README.md"
    open_block.write_text("<!-- cobench leaderboard table cifar10-prefix-injected -->\n| x |\n")
    unclosed = lb_cli(["readme", str(open_block)])
    assert unclosed.exit_code == 2 and "has no '<!-- end -->' after it" in unclosed.output
    open_block.write_text("<!-- cobench leaderboard table cifar10-prefix-injected --colour red -->\n<!-- end -->\n")
    bad_option = lb_cli(["readme", str(open_block)])
    assert bad_option.exit_code == 2
    assert (
        f"{open_block}:1: table arguments 'cifar10-prefix-injected --colour red': No such option" in bad_option.output
    )
