"""Best and last checkpoints (training.val_size): the held-out split, the best epoch, both models evaluated,
and a board showing both columns; end to end on digits with a tiny run."""

from __future__ import annotations

import csv
import io
import json

import torch

from cobench.api import DataSplits
from cobench.grid.spec import GridSpec
from cobench.leaderboard.spec import load_leaderboard
from cobench.run.best_checkpoint import split_validation
from cobench.run.runner import Runner
from cobench.store.results import iter_results
from tests.leaderboard.conftest import lb_cli


def tiny_spec(**training) -> GridSpec:
    spec = GridSpec(methods=["fgsm"], eps=[16], evaluators=["clean", "pgd"])
    spec.override(epochs=3, probe_size=32, **training)
    spec.set_param("models.small-cnn.width=8")
    spec.set_param("datasets.digits.size=8")
    spec.set_param("evaluators.pgd.steps=2")
    return spec


def test_the_split_is_held_out_of_the_training_set_and_reproducible():
    x = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1)
    data = DataSplits(x, torch.arange(20), x[:2], torch.arange(2), 20, (0.0,), (1.0,))
    train, vx, vy, record = split_validation(data, 5, seed=3)
    assert len(vx) == 5 and len(train.train_x) == 15
    assert sorted(train.train_y.tolist() + vy.tolist()) == list(range(20))  # disjoint, nothing lost
    assert torch.equal(vx.flatten(), vy.float())  # images stay with their labels
    again = split_validation(data, 5, seed=3)
    assert torch.equal(again[1], vx) and again[3] == record
    assert record["size"] == 5 and record["of"] == 20 and record["seed"] == 3 and len(record["indices_sha256"]) == 64
    assert not torch.equal(split_validation(data, 5, seed=4)[1], vx)


def test_without_val_size_nothing_changes_in_the_cell(pm):
    from cobench.grid.resolve import resolve

    cell = resolve(tiny_spec(), pm.registry)[0]
    assert "val_size" not in cell.config()["training"] and cell.training.val_size == 0
    assert resolve(tiny_spec(val_size=64), pm.registry)[0].training.val_size == 64


def test_best_and_last_models_are_both_evaluated_and_a_board_shows_both(tmp_path, pm):
    summary = Runner(tiny_spec(val_size=64), tmp_path / "res", options={"device": "cpu", "save_models": True}).run()
    assert summary.ran == 1 and not summary.failed, summary.failed
    r = json.loads(next(p for p, _ in iter_results(tmp_path / "res")).read_text())
    m, curves = r["metrics"], r["curves"]
    val = curves["val_pgd_acc"]
    assert len(val) == 3 and all(0 <= v <= 1 for v in val)
    assert m["best_epoch"] == 1 + val.index(max(val))  # the first epoch with the best validation accuracy
    for key in ("clean_acc", "pgd_acc"):
        assert 0 <= m[f"best_{key}"] <= 1 and key in m
    if m["best_epoch"] == 3:  # the best epoch is the last: both models are the same weights
        assert m["best_clean_acc"] == m["clean_acc"]
    split = r["provenance"]["data"]["validation"]
    assert split["size"] == 64 and split["seed"] == 0 and split["of"] > 64

    # a board with the best model's column beside the last model's
    board = tmp_path / "b.toml"
    board.write_text(
        '[leaderboard]\ntitle = "best and last"\nmetrics = ["best_pgd_acc"]\n'
        '[grid]\ndatasets = ["digits"]\nmodels = ["small-cnn"]\nmethods = ["fgsm"]\neps = [16]\n'
        'evaluators = ["clean", "pgd"]\n'
        "[training]\nepochs = 3\nval_size = 64\n[evaluation]\nprobe_size = 32\n"
        "[params.models.small-cnn]\nwidth = 8\n[params.datasets.digits]\nsize = 8\n"
        "[params.evaluators.pgd]\nsteps = 2\n"
    )
    (tmp_path / "results").mkdir()
    (tmp_path / "res").rename(tmp_path / "results" / "b")
    out = lb_cli(["render", str(board)])
    assert out.exit_code == 0, out.output
    lb = load_leaderboard(board)
    md = lb.output("md").read_text()
    assert "| PGD % | best PGD % |" in md and "AutoAttack %" not in md  # no autoattack evaluator here
    row = next(csv.DictReader(io.StringIO(lb.output("csv").read_text())))
    assert float(row["best_pgd_acc_mean"]) == round(m["best_pgd_acc"], 6)
    assert float(row["pgd_acc_mean"]) == round(m["pgd_acc"], 6)
    # both models' weights are saved: verify re-evaluates the last against the plain metrics and the
    # best against best_*
    assert r["weights"]["sha256"] and r["best_weights"]["sha256"] and r["best_weights"]["size"] > 0
    if m["best_epoch"] != 3:
        assert r["best_weights"]["sha256"] != r["weights"]["sha256"]
    out = lb_cli(["verify", str(board), "--all", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert "reproduced: best_clean_acc" in out.output and "best_pgd_acc" in out.output
    assert "clean_acc" in out.output.replace("best_clean_acc", "") and "0 not reproduced" in out.output
