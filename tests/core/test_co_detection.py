"""Catastrophic-overfitting detection, and the phenomenon itself on the embedded dataset."""
from __future__ import annotations

import pytest

from cobench.evaluators.co_detection import detect_collapse

RULE = dict(gap=0.3, drop=0.5, floor=0.1)


def test_collapse_is_the_first_epoch_where_pgd_falls_and_fgsm_stays_high():
    pgd = [0.10, 0.30, 0.45, 0.50, 0.05, 0.02]
    fgsm = [0.12, 0.35, 0.50, 0.55, 0.60, 0.70]
    assert detect_collapse(pgd, fgsm, **RULE) == 4


def test_no_collapse_when_fgsm_falls_too():
    pgd = [0.3, 0.4, 0.05]
    fgsm = [0.35, 0.45, 0.10]  # a generally broken model is not CO
    assert detect_collapse(pgd, fgsm, **RULE) is None


def test_no_collapse_for_steady_robust_training():
    pgd = [0.1, 0.2, 0.3, 0.35, 0.4]
    fgsm = [0.15, 0.25, 0.4, 0.45, 0.5]
    assert detect_collapse(pgd, fgsm, **RULE) is None


def test_collapse_in_the_first_epoch_needs_the_absolute_floor():
    assert detect_collapse([0.02], [0.5], **RULE) == 0
    assert detect_collapse([0.2], [0.6], **RULE) is None


@pytest.mark.slow
def test_fgsm_collapses_where_n_fgsm_holds_on_digits(tmp_path):
    """The paper's core phenomenon, on the embedded dataset (about a minute on 2 cores)."""
    from cobench.grid import GridSpec
    from cobench.runner import Runner

    spec = GridSpec(methods=["fgsm", "n-fgsm"], eps=[40], evaluators=["pgd", "co"])
    spec.set_param("evaluators.pgd.steps=10")
    summary = Runner(spec, tmp_path, options={"device": "cpu"}).run()
    by_method = {r["config"]["method"]["name"]: r["metrics"] for r in summary.results}
    assert by_method["fgsm"]["co"] == 1 and by_method["fgsm"]["pgd_acc"] < 0.15
    assert by_method["n-fgsm"]["co"] == 0 and by_method["n-fgsm"]["pgd_acc"] > 0.3
