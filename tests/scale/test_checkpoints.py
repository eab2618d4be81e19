"""Mid-cell checkpoints: atomic files, safe loading, generators and method state restored exactly."""

from __future__ import annotations

import random

import numpy as np
import torch

from cobench.methods.elle import ELLEA
from cobench.methods.free import FreeAT
from cobench.run.checkpoints import checkpoint_path, load_checkpoint, restore_rng_states, rng_states, save_checkpoint


def draws(g: torch.Generator) -> tuple:
    return torch.rand(3, generator=g), torch.rand(3), random.random(), float(np.random.rand())


def test_generators_continue_exactly_where_the_checkpoint_left_them(tmp_path):
    g = torch.Generator().manual_seed(7)
    draws(g)
    path = checkpoint_path(tmp_path, "cell")
    save_checkpoint(path, {"cell_id": "cell", "rng": rng_states(g)})
    expected = draws(g)
    draws(g)  # move every generator on
    restore_rng_states(load_checkpoint(path, "cell")["rng"], g)
    got = draws(g)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1]) and got[2:] == expected[2:]


def test_a_checkpoint_is_never_another_cells_and_never_unpickles_objects(tmp_path, capsys):
    path = checkpoint_path(tmp_path, "a")
    save_checkpoint(path, {"cell_id": "a", "x": torch.ones(2)})
    assert load_checkpoint(path, "b") is None
    assert load_checkpoint(tmp_path / "missing.pt", "a") is None
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed into place
    torch.save({"cell_id": "a", "evil": ELLEA()}, path)  # an arbitrary object in the pickle
    assert load_checkpoint(path, "a") is None  # refused unread (weights_only): set aside, the cell restarts
    assert not path.exists() and path.with_name("a.pt.corrupt").exists()
    assert f"checkpoint {path} cannot be read (UnpicklingError" in capsys.readouterr().err


def test_method_state_round_trips_tensors_and_plain_nested_objects():
    m = ELLEA()
    for error in (0.1, 0.5, 0.2, 3.0):
        m.schedule.observe(error)
    fresh = ELLEA()
    fresh.load_state_dict(m.state_dict())
    assert vars(fresh.schedule) == vars(m.schedule) and fresh.schedule.lam == m.schedule.lam_max
    free = FreeAT()
    free.delta = torch.rand(4, 1, 2, 2)
    other = FreeAT()
    other.load_state_dict(free.state_dict())
    assert torch.equal(other.delta, free.delta)
