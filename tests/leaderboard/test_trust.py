"""Trust: forged and edited results are refused or visibly marked, submitted rows are marked in
every format, names are escaped, ranks respect the seeds' noise, CO rates carry an interval."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from cobench.grid.cell import Cell
from cobench.leaderboard.board import Row
from cobench.leaderboard.rank import noise_aware_ranks
from cobench.leaderboard.trust.rows import RowTrust, co_interval
from cobench.store.digest import with_digest
from cobench.store.weights import WeightsRecord, WeightsStore
from tests.leaderboard.conftest import find_result, lb_cli

# rows, tables and messages only: the figures are drawn and checked elsewhere (conftest.tables_only)
pytestmark = pytest.mark.usefixtures("tables_only")


def forge(tiny, method: str = "forged-method", redigest: bool = False, name_in_table: str | None = None) -> None:
    """The issue's forgery: a method installed nowhere, clean/FGSM/PGD = 99 %, cell_id recomputed."""
    dest = tiny.parent / "results" / "tiny" / "submissions" / "forger"
    dest.mkdir(parents=True)
    for src in find_result(tiny, "n-fgsm", 16.0):
        data = json.loads(src.read_text())
        data["config"]["method"] = {"name": name_in_table or method, "params": {}}
        data["plugins"]["methods"] = "forged_plugin"
        data["provenance"]["components"]["methods"] = {
            name_in_table or method: {"plugin": "forged_plugin", "distribution": "cobench-forged", "version": "9.9"}
        }
        data["metrics"].update(clean_acc=0.99, fgsm_acc=0.99, pgd_acc=0.99)
        data["cell_id"] = data["config_hash"] = Cell.from_config(data["config"]).cell_id
        if redigest:
            data = with_digest(data)
        (dest / f"seed{data['seed']}.json").write_text(json.dumps(data))


def rows_of(tiny) -> dict[tuple[str, float], dict]:
    doc = json.loads(tiny.with_suffix(".json").read_text())
    return {(r["method"], r["eps"]): r for r in doc["rows"] if r["injection"] == "none"}


def test_the_forged_submission_is_marked_unranked_and_named(tiny):
    forge(tiny)
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 0, out.output
    row = rows_of(tiny)[("forged-method", 16.0)]
    assert row["flagged"] and row["rank"] is None and row["verification"] == "unverified"
    assert any("digest does not match its content" in p for p in row["problems"])
    best = [r for (m, e), r in rows_of(tiny).items() if e == 16.0 and r["rank"] == 1]
    assert best and all(r["method"] != "forged-method" for r in best)
    md = tiny.with_suffix(".md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| - | forged-method | 16/255"))
    assert "submitted: cobench-forged 9.9, unverified ⚠ inconsistent, not ranked" in line
    assert "Not ranked, because their results contradict themselves" in md and "submissions/forger/seed0.json" in md
    html = tiny.with_suffix(".html").read_text()
    assert 'data-method="forged-method"' in html and 'data-flagged="true"' in html


def test_a_forger_who_recomputes_the_digest_is_still_unverified_and_a_strict_board_refuses_it(tiny):
    forge(tiny, redigest=True)
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    row = rows_of(tiny)[("forged-method", 16.0)]
    assert not row["flagged"] and row["source"] == "submitted" and row["verification"] == "unverified"
    csv_rows = list(csv.DictReader(io.StringIO(tiny.with_suffix(".csv").read_text())))
    forged = next(r for r in csv_rows if r["method"] == "forged-method" and r["injection"] == "none")
    assert (forged["source"], forged["plugin"], forged["verification"]) == (
        "submitted",
        "cobench-forged 9.9",
        "unverified",
    )
    tiny.write_text(tiny.read_text().replace("[leaderboard]\n", "[leaderboard]\nrequire_verification = true\n"))
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 2
    assert "leaderboard 'tiny' requires verified submissions; not verified: forged-method at eps 16" in out.output


def test_an_in_place_edit_of_a_committed_pgd_acc_is_marked_and_not_ranked(tiny):
    path = find_result(tiny, "fgsm", 8.0, seed=0)[0]
    path.write_text(path.read_text().replace('"pgd_acc": ', '"pgd_acc": 0.5, "was": ', 1))
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 0, out.output
    row = rows_of(tiny)[("fgsm", 8.0)]
    assert row["flagged"] and row["rank"] is None and row["source"] == "built here"
    assert any(str(path) in p and "edited after the run" in p for p in row["problems"])
    # the console names the file too, not only the table's ⚠
    assert f"warning: tiny: row not ranked, {path}: its digest does not match its content" in out.output, out.output
    md = tiny.with_suffix(".md").read_text()
    assert "| - | fgsm | 8/255 |" in md and "built here ⚠ inconsistent, not ranked" in md


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (
            lambda m: m.update(autoattack_acc=0.9, autoattack_clean_acc=0.7),
            "autoattack_acc 0.900 is above autoattack_clean_acc",
        ),
        (lambda m: m.update(co=1, co_epoch=1), "co=1 (epoch 1) but its own probe curves give no collapse"),
    ],
)
def test_contradictory_metrics_are_flagged_even_with_a_fresh_digest(tiny, mutate, fragment):
    path = find_result(tiny, "n-fgsm", 16.0, seed=1)[0]
    data = json.loads(path.read_text())
    mutate(data["metrics"])
    path.write_text(json.dumps(with_digest(data)))
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    row = rows_of(tiny)[("n-fgsm", 16.0)]
    assert row["flagged"] and any(fragment in p for p in row["problems"]), row["problems"]


def test_submitted_names_are_escaped_in_markdown_and_html(tiny):
    forge(tiny, name_in_table="<script>alert(1)</script>", redigest=True)
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    md = tiny.with_suffix(".md").read_text()
    html = tiny.with_suffix(".html").read_text()
    assert "<script>alert" not in md and "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in md
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_pgd_is_compared_with_clean_accuracy_only_on_the_same_images():
    from cobench.store.consistency import check_accuracies

    def result(max_samples: int, **metrics) -> dict:
        return {"config": {"evaluators": [{"name": "pgd", "params": {"max_samples": max_samples}}]}, "metrics": metrics}

    assert "pgd_acc 0.860 is above clean_acc 0.800" in check_accuracies(result(0, clean_acc=0.8, pgd_acc=0.86))[0]
    assert check_accuracies(result(64, clean_acc=0.8, pgd_acc=0.86)) == []  # PGD on 64 images, clean on all
    assert check_accuracies(result(0, clean_acc=0.8, pgd_acc=0.805)) == []  # within the 1-point slack
    assert (
        "co=1 (catastrophic overfitting) but pgd_acc 0.780"
        in check_accuracies(result(0, clean_acc=0.8, pgd_acc=0.78, co=1, co_epoch=3))[0]
    )


def test_rows_within_the_seeds_spread_share_a_rank():
    def row(mean: float, std: float, flagged: bool = False) -> Row:
        trust = RowTrust("built here", "p", "built here", problems=("contradicts itself",) if flagged else ())
        return Row("d", "m", "none", 0.0, "x", 8.0, 2, {"m": (mean, std)}, trust)

    rows = [row(0.50, 0.04), row(0.47, 0.01), row(0.40, 0.01), row(0.30, 0.0, flagged=True), row(0.20, 0.0)]
    ranked = noise_aware_ranks(rows, "m")
    assert [(r.rank, r.rank_tied) for r in ranked] == [(1, True), (1, True), (3, False), (None, False), (4, False)]


def test_co_rate_interval_is_wilsons():
    low, high = co_interval([1, 0])
    assert low == pytest.approx(0.0945, abs=1e-3) and high == pytest.approx(0.9055, abs=1e-3)
    assert co_interval([0, 0])[0] == 0.0 and co_interval([]) == (None, None)


def test_a_submission_with_saved_weights_is_verified_end_to_end(tiny, tmp_path):
    """Run a method the board does not define with --save-models, submit it, verify it, then
    show that a forged accuracy (with a fresh digest) and swapped weights are both caught."""
    from tests.conftest import cli_run

    mine = tmp_path / "mine"
    ran = cli_run(
        [
            "run",
            str(tiny),
            "--methods",
            "rs-fgsm",
            "--eps",
            "8",
            "--injections",
            "none",
            "--seeds",
            "0",
            "--save-models",
            "--results-dir",
            str(mine),
            "--device",
            "cpu",
        ]
    )
    assert ran.exit_code == 0, ran.output
    (result_file,) = [p for p in mine.rglob("*.json") if p.name not in ("summary.json",)]
    result = json.loads(result_file.read_text())
    store = WeightsStore()  # the test's own store (tests/conftest.py)
    record = WeightsRecord.from_json(result["weights"])
    stored = Path(store.path(record.sha256))
    assert record.store == store.url and record.size == stored.stat().st_size and record.file is None
    assert not list(mine.rglob("*.safetensors"))  # the weights are in the store, not beside the result
    dest = tiny.parent / "results" / "tiny" / "submissions" / "me"
    dest.mkdir(parents=True)
    (dest / result_file.name).write_bytes(result_file.read_bytes())
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    assert rows_of(tiny)[("rs-fgsm", 8.0)]["verification"] == "unverified"  # its weights are in the local store
    stored.rename(stored.with_suffix(".away"))
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    assert rows_of(tiny)[("rs-fgsm", 8.0)]["verification"] == "weights not fetched"
    assert ", weights not fetched |" in tiny.with_suffix(".md").read_text()
    stored.with_suffix(".away").rename(stored)

    checked = lb_cli(["verify", str(tiny), "--device", "cpu"])
    assert checked.exit_code == 0, checked.output
    assert "reproduced" in checked.output and "1 result(s) checked, 0 not reproduced (tolerance 0.01)" in checked.output
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    row = rows_of(tiny)[("rs-fgsm", 8.0)]
    assert row["verification"] == "verified" and not row["flagged"]
    tiny.write_text(tiny.read_text().replace("[leaderboard]\n", "[leaderboard]\nrequire_verification = true\n"))
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    assert (
        "submitted: cobench" in tiny.with_suffix(".md").read_text()
        and ", verified |" in tiny.with_suffix(".md").read_text()
    )

    # a forger raises pgd_acc and recomputes the digest: re-evaluation refuses it
    submitted = dest / result_file.name
    data = json.loads(submitted.read_text())
    data["metrics"]["pgd_acc"] = data["metrics"]["pgd_acc"] + (0.1 if data["metrics"]["pgd_acc"] < 0.9 else -0.1)
    submitted.write_text(json.dumps(with_digest(data)))
    refused = lb_cli(["verify", str(tiny), "--device", "cpu"])
    assert refused.exit_code == 1 and "NOT reproduced (pgd_acc off by" in refused.output, refused.output
    tiny.write_text(tiny.read_text().replace("require_verification = true\n", ""))
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    row = rows_of(tiny)[("rs-fgsm", 8.0)]
    assert row["verification"] == "verification failed" and row["flagged"] and row["rank"] is None

    # other weights than the result names, under its hash in the store
    submitted.write_text(json.dumps(result))
    blob = bytearray(stored.read_bytes())
    blob[-1] ^= 1
    stored.write_bytes(bytes(blob))
    swapped = lb_cli(["verify", str(tiny), "--device", "cpu"])
    assert swapped.exit_code == 2 and "does not hash to the SHA-256 it is named by" in swapped.output
