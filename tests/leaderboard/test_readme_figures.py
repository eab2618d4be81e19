"""The README's real-image tables quote the committed cifar10-prefix-fast-at and
cifar10-prefix-injected boards, row for row: a figure there that no committed result backs, or a
board row it leaves out, fails."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "leaderboards" / "cifar10-prefix-fast-at.json"
INJECTED = ROOT / "leaderboards" / "cifar10-prefix-injected.json"
LABELS = {"FGSM-AT": "fgsm", "N-FGSM": "n-fgsm", "PGD-AT (3 steps)": "pgd"}


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def tables(section: str) -> list[list[list[str]]]:
    """Each markdown table in ``section``: its body rows (header and rule dropped), cells unbolded."""
    found: list[list[list[str]]] = []
    previous = ""
    for line in section.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                found.append([])
            found[-1].append([c.strip().strip("*") for c in line.strip("|").split("|")])
        previous = line
    return [table[2:] for table in found]


def percent(row: dict, key: str) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if row["seeds"] > 1 else "")


def co_text(row: dict) -> str:
    collapsed = round(row["co_rate"] * row["seeds"])
    return f"{collapsed} of {row['seeds']}" + (f" ({row['co_epoch_median']:g})" if collapsed else "")


def test_the_readme_real_image_table_is_the_committed_board():
    board = json.loads(BOARD.read_text())
    section = readme_section("On real CIFAR-10 images")
    rows = {(r["method"], r["eps"]): r for r in board["rows"]}
    quoted = tables(section)[0]
    assert len(quoted) == len(rows), f"the README quotes {len(quoted)} rows, the board has {len(rows)}"
    for label, eps, seeds, clean, fgsm, pgd, aa, co in quoted:
        row = rows[(LABELS[label], float(eps.removesuffix("/255")))]
        where = f"README row {label} {eps}"
        assert int(seeds) == row["seeds"], where
        assert (clean, fgsm) == (percent(row, "clean_acc"), percent(row, "fgsm_acc")), where
        assert (pgd, aa) == (percent(row, "pgd50_10_acc"), percent(row, "autoattack_acc")), where
        assert co == co_text(row), where
    cov = board["coverage"]
    stated = re.search(r"(\d+) of the board's (\d+) cells", section)
    assert stated, "the README says how many of the board's cells are in"
    assert (int(stated[1]), int(stated[2])) == (cov["grid_cells_finished"], cov["grid_cells"])


def test_the_readme_induced_co_table_is_the_committed_injected_board():
    board = json.loads(INJECTED.read_text())
    rows = {(r["method"], r["eps"], r["beta"]): r for r in board["rows"]}
    quoted = tables(readme_section("On real CIFAR-10 images"))[1]
    assert len(quoted) == len(rows), f"the README quotes {len(quoted)} rows, the board has {len(rows)}"
    for label, eps, beta, seeds, clean, fgsm, pgd, carrier, plain, co in quoted:
        row = rows[(LABELS[label], float(eps.removesuffix("/255")), float(beta.removesuffix("/255")))]
        where = f"README row {label} {eps} beta {beta}"
        assert int(seeds) == row["seeds"], where
        assert (clean, fgsm, pgd) == tuple(percent(row, k) for k in ("clean_acc", "fgsm_acc", "pgd50_10_acc")), where
        assert (carrier, plain) == (percent(row, "carrier_acc"), percent(row, "no_injection_acc")), where
        assert co == co_text(row), where
    assert board["coverage"]["grid_cells_finished"] == board["coverage"]["grid_cells"], "the board is fully built"
