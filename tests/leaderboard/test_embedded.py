"""The embedded-default leaderboard shipped in leaderboards/: committed, up to date, and
showing what it claims (results are the committed measurements, not re-run here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LB = ROOT / "leaderboards" / "digits-small-cnn.toml"


def test_embedded_leaderboard_is_up_to_date_through_the_installed_command():
    proc = subprocess.run([sys.executable, "-m", "cobench", "leaderboard", "check", str(LB)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "digits-small-cnn: up to date" in proc.stdout


def test_embedded_leaderboard_shows_catastrophic_overfitting_of_fgsm_only():
    doc = json.loads(LB.with_suffix(".json").read_text())
    assert doc["coverage"] == {"grid_cells": 12, "grid_cells_finished": 12, "failed_cells": 0, "submitted_cells": 0}
    rows = {(r["method"], r["eps"]): r for r in doc["rows"]}
    assert set(rows) == {(m, e) for m in ("fgsm", "n-fgsm", "pgd") for e in (16.0, 40.0)}
    assert rows[("fgsm", 40.0)]["co_rate"] == 1.0 and rows[("fgsm", 40.0)]["pgd_acc_mean"] < 0.1
    # FGSM accuracy stays high while PGD accuracy collapses: the signature of CO
    assert rows[("fgsm", 40.0)]["fgsm_acc_mean"] - rows[("fgsm", 40.0)]["pgd_acc_mean"] > 0.3
    for m in ("n-fgsm", "pgd"):
        assert rows[(m, 40.0)]["co_rate"] == 0.0 and rows[(m, 40.0)]["pgd_acc_mean"] > 0.4
    for m in ("fgsm", "n-fgsm", "pgd"):
        assert rows[(m, 16.0)]["co_rate"] == 0.0
    html = LB.with_suffix(".html").read_text()
    for m in ("fgsm", "n-fgsm", "pgd"):
        assert f'data-method="{m}"' in html
