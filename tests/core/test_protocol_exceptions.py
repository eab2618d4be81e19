"""Per-setting exceptions of the reference protocols: the eps warm-up of the training attacks
(N-FGSM on SVHN), N-FGSM's k under its SVHN protocol, and an evaluation step written relative to
eps (GradAlign's eps/4); and that none of them moves the identity of existing cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cobench.api import DataSplits, EvalContext, Evaluator, Method
from cobench.errors import ConfigError
from cobench.grid.cell import Cell
from cobench.grid.protocols import PROTOCOLS, eval_step_at
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec, TrainingConfig
from cobench.leaderboard.spec import load_leaderboard
from cobench.options import RunOptions
from cobench.run.runtime import CellParts
from cobench.run.training import eps_warmup_scale, train
from tests.conftest import cli_run

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- evaluation step rule
@pytest.mark.parametrize(
    "step,eps255,expected",
    [(2.0, 16, 2.0), (3, 8, 3.0), ("eps/4", 8, 2.0), ("eps/4", 16, 4.0), ("eps * 0.5", 12, 6.0), ("eps", 6, 6.0)],
)
def test_eval_step_is_a_number_or_a_rule_relative_to_eps(step, eps255, expected):
    assert eval_step_at(step, eps255) == pytest.approx(expected)


@pytest.mark.parametrize("step", ["eps/0", "4/eps", "quarter", "eps/", True])
def test_a_bad_eval_step_rule_says_what_is_valid(step):
    with pytest.raises(ConfigError, match="eval_step_size .* eps/N or eps\\*F"):
        eval_step_at(step, 8)


def cells(
    pm, protocol: str, method: str, eps: list[float], evaluators: list[str], params: tuple[str, ...] = ()
) -> list[Cell]:
    spec = GridSpec(methods=[method], eps=eps, evaluators=evaluators)
    spec.override(protocol=protocol)
    for p in params:
        spec.set_param(p)
    return resolve(spec, pm.registry)


def final_attack(pm, protocol: str, eps: list[float], params: tuple[str, ...] = ()) -> dict[float, dict]:
    return {c.eps: c.evaluators[1].params for c in cells(pm, protocol, "fgsm", eps, ["clean", "pgd-50-10"], params)}


def test_grad_align_protocol_steps_its_final_pgd_by_eps_over_4_per_cell(pm):
    attack = final_attack(pm, "grad-align", [8, 16])
    assert attack[8.0]["step_size"] == 2.0 and attack[16.0]["step_size"] == 4.0
    assert attack[16.0]["steps"] == 50 and attack[16.0]["restarts"] == 10 and attack[16.0]["max_samples"] == 1000
    # the other presets keep the absolute 2/255 at every eps; an explicit parameter still wins
    assert {a["step_size"] for a in final_attack(pm, "co-features", [8, 16]).values()} == {2.0}
    assert final_attack(pm, "grad-align", [16], ("evaluators.pgd-50-10.step_size=1.5",))[16.0]["step_size"] == 1.5


def test_the_resolved_step_reaches_the_attack_as_eps_over_4(pm, monkeypatch):
    import cobench.evaluators.accuracy as accuracy

    steps = []
    monkeypatch.setattr(
        accuracy,
        "pgd_until_fooled",
        lambda model, x, y, eps, **kw: steps.append((eps, kw["alpha"])) or torch.zeros_like(x),
    )
    x, y = torch.rand(4, 1, 4, 4), torch.arange(4) % 2
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval()
    for eps255, params in final_attack(pm, "grad-align", [8, 16]).items():
        ctx = EvalContext(
            eps=eps255 / 255,
            test_x=x,
            test_y=y,
            clean_test_x=x,
            injection=None,
            num_classes=2,
            device=torch.device("cpu"),
            batch_size=4,
            seed=0,
            probe_x=x,
            probe_y=y,
        )
        pm.registry.get("evaluators", "pgd-50-10")(**params).evaluate(model, ctx)
        assert steps[-1][1] == pytest.approx(steps[-1][0] / 4)


# --------------------------------------------------------------------------- N-FGSM's k on SVHN
def test_n_fgsm_svhn_protocol_applies_k_3_at_12_only_through_the_methods_rule(pm):
    def k(protocol: str, eps: float, params: tuple[str, ...] = ()) -> float:
        return cells(pm, protocol, "n-fgsm", [eps], ["clean"], params)[0].method.params["k"]

    assert k("n-fgsm-svhn", 12) == 3.0 and k("n-fgsm-svhn", 10) == 2.0
    assert k("n-fgsm", 12) == 2.0 and k("co-features", 12) == 2.0  # CIFAR-10's rule: 2 at every eps
    assert k("n-fgsm-svhn", 12, ("methods.n-fgsm.k=2.5",)) == 2.5  # the user's value wins
    assert k("n-fgsm", 16, ("methods.n-fgsm.k=4",)) == 4.0  # WRN-28-10 at 16/255, as docs/protocols.md writes it


# --------------------------------------------------------------------------- eps warm-up in training
def test_warm_up_scale_is_n_fgsms_min_of_iteration_over_warm_up_iterations():
    assert [eps_warmup_scale(i, 4) for i in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert eps_warmup_scale(0, 0) == 1.0


class EpsRecorder(Method):
    """Records the attack eps the training loop hands each step; trains on clean inputs."""

    name = "eps-recorder"

    def setup(self, setup):
        self.seen: list[float] = []

    def train_step(self, batch, ctx):
        self.seen.append(ctx.eps)
        for _ in range(self.replays):
            logits = ctx.model(batch.x)
            ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


class EvalEpsRecorder(Evaluator):
    name = "eval-eps-recorder"

    def on_epoch_end(self, model, ctx, epoch):
        self.seen = ctx.eps
        return {}


@pytest.mark.parametrize("replays", [1, 2])
def test_training_attacks_follow_the_warm_up_and_evaluation_uses_the_full_eps(pm, replays):
    eps, n, bs = 8 / 255, 32, 8  # 4 minibatches per epoch
    x, y = torch.rand(n, 1, 4, 4), torch.arange(n) % 2
    method, probe = EpsRecorder(), EvalEpsRecorder()
    method.replays = replays  # a replaying method (Free-AT) ramps over the same number of updates
    injection = pm.registry.get("injections", "none")()
    ctx = EvalContext(
        eps=eps,
        test_x=x[:4],
        test_y=y[:4],
        clean_test_x=x[:4],
        injection=injection,
        num_classes=2,
        device=torch.device("cpu"),
        batch_size=4,
        seed=0,
        probe_x=x[:4],
        probe_y=y[:4],
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    parts = CellParts(
        model=model,
        method=method,
        data=DataSplits(x, y, x[:4], y[:4], 2, (0.5,), (0.5,)),
        injection=injection,
        evaluators=[probe],
        eval_ctx=ctx,
    )
    training = {**PROTOCOLS["n-fgsm-svhn"].training_values(), "epochs": 4, "batch_size": bs, "eps_warmup_epochs": 2}
    train(parts, training, RunOptions(device="cpu"))
    # one eps per minibatch, set from the updates done before it: 8 updates of warm-up
    expected = [eps * min(replays * i / 8, 1.0) for i in range(len(method.seen))]
    assert method.seen == pytest.approx(expected, abs=1e-12)
    assert method.seen[0] == 0.0 and method.seen[-1] == eps and probe.seen == eps


def test_warm_up_longer_than_training_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"training.eps_warmup_epochs = 40: expected <= epochs \(30\)"):
        TrainingConfig(eps_warmup_epochs=40).validate()
    with pytest.raises(ConfigError, match="training.eps_warmup_epochs = -1: expected >= 0"):
        TrainingConfig(eps_warmup_epochs=-1).validate()
    assert GridSpec.from_dict({"training": {"eps_warmup_epochs": 3}}).training.resolved()["eps_warmup_epochs"] == 3


# --------------------------------------------------------------------------- cell identity
def test_new_fields_enter_a_cells_config_only_when_they_differ_from_the_default(pm):
    for protocol in ("co-features", "fast-at", "n-fgsm", "elle"):
        assert "eps_warmup_epochs" not in cells(pm, protocol, "fgsm", [8], ["clean"])[0].config()["training"]
    assert cells(pm, "n-fgsm-svhn", "fgsm", [8], ["clean"])[0].config()["training"]["eps_warmup_epochs"] == 5


@pytest.mark.parametrize("board", ["digits-small-cnn", "digits-induced-co"])
def test_the_shipped_boards_results_keep_their_cell_ids(pm, board):
    """Every stored result of a built board is still one of the cells its grid resolves to."""
    lb = load_leaderboard(ROOT / "leaderboards" / f"{board}.toml")
    stored = [json.loads(p.read_text()) for p in sorted(lb.results_dir.rglob("*.json"))]
    configs = [r["config"] for r in stored if isinstance(r, dict) and "config" in r]
    assert configs, f"no stored results under {lb.results_dir}"
    ids = {c.cell_id for c in resolve(lb.grid, pm.registry)}
    assert {Cell.from_config(c).cell_id for c in configs} <= ids


def test_list_protocols_shows_the_svhn_preset_and_the_eps_relative_step():
    out = cli_run(["list", "protocols"])
    assert out.exit_code == 0 and "n-fgsm-svhn" in out.output and "eps_warmup_epochs=5" in out.output
    assert "step eps/4" in out.output
    listed = json.loads(cli_run(["list", "protocols", "--json"]).output)
    assert {p["name"]: p["eval_step_size"] for p in listed}["grad-align"] == "eps/4"


# --------------------------------------------------------------------------- leaderboards
def test_a_submission_follows_the_boards_protocol_at_its_own_eps(pm, tmp_path):
    """Under grad-align the final attack's step differs by eps: a third-party result at 16/255
    carries the 4/255 step and is accepted; one with the 8/255 cell's step is rejected."""
    from cobench.leaderboard.board import Board
    from cobench.leaderboard.collect import ProtocolError, collect
    from cobench.leaderboard.render.text import protocol_items
    from cobench.store.digest import with_digest

    toml = tmp_path / "board.toml"
    toml.write_text(
        '[leaderboard]\ntitle = "t"\ndescription = "d"\n[grid]\ndatasets = ["digits"]\n'
        'models = ["small-cnn"]\nmethods = ["fgsm"]\neps = [8, 16]\nevaluators = ["clean", "pgd-50-10"]\n'
        '[training]\nprotocol = "grad-align"\n'
    )
    lb = load_leaderboard(toml)
    by_eps = {c.eps: c for c in resolve(lb.grid, pm.registry)}
    template = json.loads(next((ROOT / "leaderboards/results/digits-small-cnn").rglob("*.json")).read_text())

    def submission(evaluators_of: float) -> Path:
        data = json.loads(json.dumps(template))
        data["config"] = {
            **by_eps[16.0].config(),
            "method": {"name": "my-method", "params": {}},
            "evaluators": by_eps[evaluators_of].config()["evaluators"],
        }
        data["plugins"]["methods"] = "my_plugin"
        data["provenance"]["components"]["methods"] = {
            "my-method": {"plugin": "my_plugin", "distribution": "cobench-my-method", "version": "0.1.0"}
        }
        data["cell_id"] = data["config_hash"] = Cell.from_config(data["config"]).cell_id
        path = tmp_path / f"mine-{evaluators_of:g}.json"
        path.write_text(json.dumps(with_digest(data)))
        return path

    coll = collect(lb, pm.registry, extra=[submission(16.0)])  # the 4/255 step at 16/255
    assert coll.results
    board = Board(lb=lb, coll=coll, rows=(), rank_metric=None)
    evaluation = next(item for item in protocol_items(board) if item.startswith("**Evaluation**"))
    assert "at eps 8/255: `clean`, `pgd-50-10` (" in evaluation and "step_size=2" in evaluation.split("at eps 16")[0]
    assert "step_size=4" in evaluation.split("at eps 16/255")[1]
    with pytest.raises(ProtocolError, match=r'"step_size": 2\.0.*the leaderboard uses .*"step_size": 4\.0'):
        collect(lb, pm.registry, extra=[submission(8.0)])
