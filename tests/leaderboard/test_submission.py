"""``cobench leaderboard validate --summary``: the pull-request check of submissions. An honest
submission passes and its row is shown; a forged one fails naming the file, its row marked."""

from __future__ import annotations

import json
from pathlib import Path

from cobench.grid.cell import Cell
from cobench.store.digest import with_digest
from tests.leaderboard.conftest import find_result, lb_cli

OTHER_BOARD = """\
[leaderboard]
title = "Another board"

[grid]
datasets = ["digits"]
models = ["small-cnn"]
methods = ["fgsm"]
eps = [4]
seeds = [0]
"""


def submit(tiny: Path, change=None, sign: bool = True) -> list[Path]:
    """n-fgsm's two seeds at 16/255 as a new method, ``my-method``, under the board's submissions."""
    folder = tiny.parent / "results" / "tiny" / "submissions" / "me"
    folder.mkdir(parents=True)
    out = []
    for src in find_result(tiny, "n-fgsm", 16.0):
        data = json.loads(src.read_text())
        data["config"]["method"] = {"name": "my-method", "params": {"gamma": 0.5}}
        data["plugins"]["methods"] = "my_plugin"
        data["provenance"]["components"]["methods"] = {
            "my-method": {"plugin": "my_plugin", "distribution": "cobench-my-method", "version": "0.1.0"}
        }
        data["cell_id"] = data["config_hash"] = Cell.from_config(data["config"]).cell_id
        data = with_digest(data)
        if change and data["seed"] == 1:
            change(data)
            data = with_digest(data) if sign else data
        path = folder / f"my-method-seed{data['seed']}.json"
        path.write_text(json.dumps(data))
        out.append(path)
    return out


def check(tiny: Path, files: list[Path], tmp_path: Path):
    other = tiny.parent / "other.toml"
    other.write_text(OTHER_BOARD)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier steps\n")
    args = ["validate", *map(str, files), "--leaderboard", str(other), "--leaderboard", str(tiny)]
    return lb_cli([*args, "--summary", str(summary)]), summary.read_text()


def row_of(summary: str, method: str) -> list[str]:
    line = next(line for line in summary.splitlines() if f"| {method} |" in line)
    return [c.strip() for c in line.strip("|").split("|")]


def test_an_honest_submission_passes_and_shows_its_row(tiny, tmp_path):
    result, summary = check(tiny, submit(tiny), tmp_path)
    assert result.exit_code == 0, result.output
    assert "2 result file(s) valid; they follow" in result.output and "tiny.toml" in result.output
    assert summary.startswith("earlier steps\n## Leaderboard submission check")  # appended
    assert "✅ 2 result file(s): 2 valid, 0 inconsistent, 0 invalid" in summary
    assert summary.count("no weights recorded (cannot be verified") == 2
    assert "### Tiny test leaderboard (`tiny`)" in summary and "Another board" not in summary
    row = row_of(summary, "my-method")
    assert row[0] == "none" and row[3] == "16/255" and row[-1] == "submitted: cobench-my-method 0.1.0, unverified"
    board = json.loads(tiny.with_suffix(".json").read_text())
    nfgsm = next(r for r in board["rows"] if (r["method"], r["eps"], r["injection"]) == ("n-fgsm", 16, "none"))
    assert row[6] == f"{100 * nfgsm['pgd_acc_mean']:.1f} ± {100 * nfgsm['pgd_acc_std']:.1f}"  # same numbers
    assert sum(line.startswith("| none |") for line in summary.splitlines()) == 1  # only the added row
    assert f"To verify: `cobench leaderboard verify {tiny} --weights-store URL`" in summary


def test_a_forged_metric_fails_and_its_row_is_marked(tiny, tmp_path):
    files = submit(tiny, lambda d: d["metrics"].update(pgd_acc=0.95), sign=False)
    result, summary = check(tiny, files, tmp_path)
    assert result.exit_code == 1
    assert f"inconsistent {files[1]}: its digest does not match its content" in result.output
    assert "2 result file(s): 1 valid, 1 inconsistent, 0 invalid" in result.output
    assert "❌ 2 result file(s)" in summary and f"- ❌ `{files[1]}`: its digest does not match" in summary
    row = row_of(summary, "my-method")
    assert row[1] == "-" and row[-1].endswith("⚠ inconsistent, not ranked")


def test_a_re_signed_forgery_on_other_data_fails(tiny, tmp_path):
    """A forger who recomputes the digest still has to claim the board's data fingerprint."""

    def other_data(d):
        d["provenance"]["data"]["loaded"] = "sha256:" + "0" * 64

    result, summary = check(tiny, submit(tiny, other_data), tmp_path)
    assert result.exit_code == 1 and "it was trained on other data" in result.output
    assert "❌" in summary and "trained on other data" in summary


def test_a_submission_under_another_protocol_fails_with_one_line(tiny, tmp_path):
    files = submit(tiny, lambda d: d["config"]["training"].update(epochs=5))
    for p in files:  # its cell id and digest follow its config, as a real run's would
        d = json.loads(p.read_text())
        d["config"]["training"]["epochs"] = 5
        d["cell_id"] = d["config_hash"] = Cell.from_config(d["config"]).cell_id
        p.write_text(json.dumps(with_digest(d)))
    result, summary = check(tiny, files, tmp_path)
    assert result.exit_code == 2 and "config.training.epochs is 5, the leaderboard uses 2" in result.output
    assert "Traceback" not in result.output
    assert "❌ does not follow the board's protocol" in summary
