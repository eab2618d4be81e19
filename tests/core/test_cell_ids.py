"""Stored cells keep their ids: the committed results' configs hash to the ids they were stored
under, also after a round trip through the typed training settings (cobench.grid.spec.CellTraining),
and the late fields' defaults are the settings' own. A cell holds typed, frozen values and gives
back the config it was read from, unchanged."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from cobench.errors import ConfigError
from cobench.grid.cell import Cell
from cobench.grid.protocols import TRAINING_FIELDS
from cobench.grid.spec import LATE_DEFAULTS, CellTraining, TrainingConfig
from cobench.params import ComponentSpec, Params

ROOT = Path(__file__).resolve().parents[2]
RESULTS = sorted((ROOT / "leaderboards" / "results").rglob("*.json"))


def stored(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_are_committed_results_to_check():
    assert len(RESULTS) >= 80  # the seven committed result folders hold 89


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: str(p.relative_to(ROOT / "leaderboards" / "results")))
def test_a_committed_result_hashes_to_its_stored_id(path: Path):
    result = stored(path)
    cell = Cell.from_config(result["config"])
    assert cell.cell_id == result["config_hash"] == result["cell_id"]
    typed = CellTraining.from_config(result["config"]["training"])
    assert typed.as_config() == result["config"]["training"]  # nothing added, dropped or changed
    again = Cell.from_config({**result["config"], "training": typed.as_config()})
    assert again.cell_id == result["cell_id"]


def test_a_stored_config_without_the_late_fields_reads_their_defaults():
    old = {k: v for k, v in TrainingConfig().as_config().items() if k not in LATE_DEFAULTS}
    typed = CellTraining.from_config(old)
    assert {k: getattr(typed, k) for k in LATE_DEFAULTS} == {
        "amp": "off",
        "stop_after_collapse": 0,
        "eps_warmup_epochs": 0,
        "val_size": 0,
    }
    assert typed.as_config() == old


def test_a_late_field_off_its_default_is_kept_and_moves_the_id():
    training = TrainingConfig(amp="bf16", stop_after_collapse=2).as_config()
    assert (training["amp"], training["stop_after_collapse"]) == ("bf16", 2)
    assert "val_size" not in training and "eps_warmup_epochs" not in training
    assert CellTraining.from_config(training).amp == "bf16"


def test_the_grid_config_and_the_typed_settings_agree_on_every_field():
    config = TrainingConfig(protocol="elle", epochs=3)
    typed = config.for_cell()
    resolved = config.resolved()
    assert {k: getattr(typed, k) for k in resolved} == resolved
    assert set(TRAINING_FIELDS) <= set(resolved)


def test_a_malformed_training_config_is_one_clear_error():
    good = TrainingConfig().as_config()
    with pytest.raises(ConfigError, match=r"unknown key\(s\) lr; missing key\(s\) lr_max"):
        CellTraining.from_config({**{k: v for k, v in good.items() if k != "lr_max"}, "lr": 0.1})


def blob(config: dict) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: str(p.relative_to(ROOT / "leaderboards" / "results")))
def test_a_committed_config_round_trips_through_the_typed_cell_unchanged(path: Path):
    config = stored(path)["config"]
    cell = Cell.from_config(config)
    assert isinstance(cell.training, CellTraining) and isinstance(cell.method, ComponentSpec)
    assert blob(cell.config()) == blob(config)  # the same JSON, number types included
    assert Cell.from_config(cell.config()) == cell


def test_a_config_without_the_late_fields_round_trips_and_keeps_them_out():
    training = {k: v for k, v in TrainingConfig().as_config().items() if k not in LATE_DEFAULTS}
    config = {
        "dataset": {"name": "cifar10", "params": {"fingerprints": {"data_batch_1": "sha256:ab"}, "augment": True}},
        "model": {"name": "preact-resnet18", "params": {"width": 16, "blocks": [2, 2, [1, None]]}},
        "method": {"name": "n-fgsm", "params": {"k": 2.0, "alpha": 8}},
        "eps": 8,  # an int, as a hand-written file may hold it: kept an int, so the id does not move
        "injection": {"name": "none", "params": {}},
        "beta": 0.0,
        "seed": 1,
        "training": training,
        "evaluators": [{"name": "clean", "params": {}}, {"name": "pgd", "params": {"steps": 10, "restarts": 1}}],
    }
    cell = Cell.from_config(config)
    assert cell.training.amp == "off" and cell.training.val_size == 0
    assert cell.config() == config and blob(cell.config()) == blob(config)
    assert cell.dataset.params["fingerprints"]["data_batch_1"] == "sha256:ab"
    assert cell.model.params["blocks"] == (2, 2, (1, None)) and cell.model.kwargs()["blocks"] == [2, 2, [1, None]]
    late = Cell.from_config({**config, "training": {**training, "amp": "bf16"}})
    assert late.config()["training"]["amp"] == "bf16" and late.cell_id != cell.cell_id


def test_a_cell_is_frozen_hashable_and_pickles():
    cell = Cell.from_config(stored(RESULTS[0])["config"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cell.seed = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        cell.method.params["x"] = 1  # type: ignore[index]
    assert isinstance(cell.method.params, Params) and hash(cell) == hash(Cell.from_config(cell.config()))
    again = pickle.loads(pickle.dumps(cell))  # executors ship cells to other processes
    assert again == cell and again.cell_id == cell.cell_id


def test_a_malformed_config_is_an_error_not_a_cell():
    config = stored(RESULTS[0])["config"]
    with pytest.raises(TypeError, match="missing seed"):
        Cell.from_config({k: v for k, v in config.items() if k != "seed"})
    with pytest.raises(TypeError, match="unknown extra"):
        Cell.from_config({**config, "extra": 1})
    with pytest.raises(TypeError, match="a component is"):
        Cell.from_config({**config, "method": {"name": "fgsm"}})


def test_a_result_with_a_training_setting_this_cobench_lacks_is_refused_naming_the_file():
    from cobench.store.results import ResultValidationError, validate_result

    result = stored(RESULTS[0])
    result["config"]["training"]["from_the_future"] = 1
    with pytest.raises(ResultValidationError, match=r"'x\.json': its config is not one .* from_the_future"):
        validate_result(result, "x.json")
