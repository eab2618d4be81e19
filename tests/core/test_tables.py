"""The run table: aggregation over seeds and the columns it shows."""

from __future__ import annotations

from rich.console import Console

from cobench.store.tables import aggregate, summary_tables


def row(seed: int, **metrics: float) -> dict:
    return {
        "status": "ok",
        "dataset": "digits",
        "model": "small-cnn",
        "injection": "none",
        "beta": 0.0,
        "method": "fgsm",
        "eps": 8.0,
        "seed": seed,
        "clean_acc": 0.9,
        "fgsm_acc": 0.5,
        "pgd_acc": 0.4,
        **metrics,
    }


def rendered(rows: list[dict]) -> str:
    console = Console(width=300, record=True)
    for table in summary_tables(aggregate(rows)):
        console.print(table)
    return console.export_text()


def test_a_third_party_evaluators_accuracy_reaches_the_run_table():
    rows = [row(0, noise_acc=0.25), row(1, noise_acc=0.75)]
    agg = aggregate(rows)
    assert agg[0]["noise_acc_mean"] == 0.5
    text = rendered(rows)
    assert "noise_acc %" in text and "50.0 ± 35.4" in text


def test_no_extra_columns_without_extra_metrics():
    header = rendered([row(0)]).splitlines()[1:4]
    assert not any("_acc %" in line for line in header)
