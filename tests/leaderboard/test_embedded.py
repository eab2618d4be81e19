"""The leaderboards shipped in leaderboards/: committed, up to date, and showing what they
claim (results are the committed measurements, not re-run here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LB = ROOT / "leaderboards" / "digits-small-cnn.toml"
INDUCED = ROOT / "leaderboards" / "digits-induced-co.toml"
ZOO = ("fgsm", "rs-fgsm", "n-fgsm", "grad-align", "elle", "fgsm-pgi", "pgd")


@pytest.mark.parametrize("board", [LB, INDUCED], ids=lambda p: p.stem)
def test_shipped_leaderboards_are_up_to_date_through_the_installed_command(board):
    proc = subprocess.run(
        [sys.executable, "-m", "cobench", "leaderboard", "check", str(board)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{board.stem}: up to date" in proc.stdout


def test_embedded_leaderboard_shows_catastrophic_overfitting_of_fgsm_only():
    doc = json.loads(LB.with_suffix(".json").read_text())
    coverage = dict(doc["coverage"])
    assert coverage.pop("grid_wall_hours") > 0  # the build time the board states, from its results
    assert coverage == {"grid_cells": 28, "grid_cells_finished": 28, "failed_cells": 0, "submitted_cells": 0}
    rows = {(r["method"], r["eps"]): r for r in doc["rows"]}
    assert set(rows) == {(m, e) for m in ZOO for e in (16.0, 40.0)}
    fgsm = rows[("fgsm", 40.0)]
    assert fgsm["co_rate"] == 1.0 and fgsm["pgd_acc_mean"] < 0.1
    # FGSM accuracy stays high while PGD accuracy collapses: the signature of CO
    assert fgsm["fgsm_acc_mean"] - fgsm["pgd_acc_mean"] > 0.3
    for m in ("n-fgsm", "pgd"):
        assert rows[(m, 40.0)]["co_rate"] == 0.0 and rows[(m, 40.0)]["pgd_acc_mean"] > 0.4
    for m in ("rs-fgsm", "grad-align", "elle"):  # they end robust, far above collapsed FGSM
        assert rows[(m, 40.0)]["pgd_acc_mean"] > 0.25
    for m in ZOO:
        assert rows[(m, 16.0)]["co_rate"] == 0.0
    # the GradAlign seed-0 blip at epoch 4 (tests/core/test_co_detection.py) is not CO any more
    assert rows[("grad-align", 40.0)]["co_rate"] == 0.0
    # every row is ranked by AutoAttack, which decides whether a high PGD figure is gradient masking
    assert doc["ranked_by"] == "autoattack_acc"
    assert all(r["autoattack_acc_mean"] is not None for r in doc["rows"])
    html = LB.with_suffix(".html").read_text()
    for m in ZOO:
        assert f'data-method="{m}"' in html


def test_induced_leaderboard_shows_injection_induced_co():
    doc = json.loads(INDUCED.with_suffix(".json").read_text())
    assert doc["coverage"]["grid_cells_finished"] == doc["coverage"]["grid_cells"] == 8
    rows = {(r["method"], r["eps"], r["injection"], r["beta"]): r for r in doc["rows"]}
    plain, injected = rows[("fgsm", 32.0, "none", 0.0)], rows[("fgsm", 32.0, "low-freq", 12.0)]
    assert plain["co_rate"] == 0.0
    assert injected["co_rate"] == 1.0 and injected["pgd_acc_mean"] < 0.1
    assert injected["fgsm_acc_mean"] - injected["pgd_acc_mean"] > 0.5
    assert all(r["co_rate"] == 0.0 for k, r in rows.items() if k[0] == "n-fgsm")
