"""The method zoo as `cobench list methods` shows it. (Each method's one-epoch run through
the runner, with its cost, is part of the method contract: tests/scale/test_contract.py.)"""

from __future__ import annotations


def test_the_zoo_has_at_least_fourteen_methods_each_with_a_paper_and_summary(pm):
    rows = pm.describe("methods")
    assert len(rows) >= 14
    for row in rows:
        assert row["paper"], row["name"]
        assert row["summary"], row["name"]
        assert all(v is not None for v in row["parameters"].values()), row["name"]
