"""The boundary search end to end through the real runner, on the synthetic CO oracle plugin:
every point is ordinary cells in the results directory, resumable and shared."""

from __future__ import annotations

import pytest

from cobench.boundary.driver import search_boundaries
from cobench.boundary.plot import phase_diagram
from cobench.boundary.report import rows, table
from cobench.errors import ConfigError
from cobench.grid.spec import GridSpec
from cobench.run.runner import Runner
from cobench.store.results import iter_results
from cobench.testing import tiny_grid_spec

from . import oracle_plugin


@pytest.fixture
def oracle_pm(pm):
    pm.unregister("cobench.evaluators.co_detection")  # the oracle's "co" replaces the real detector
    pm.register(oracle_plugin.TinyParts(), "oracle-parts")
    pm.register(oracle_plugin.OracleVerdict(), "oracle-verdict")
    return pm


def oracle_spec(**grid):
    spec = GridSpec(
        **{
            "datasets": ["oracle-data"],
            "models": ["oracle-model"],
            "methods": ["oracle-method"],
            "evaluators": ["co"],
            "seeds": [0, 1],
            **grid,
        }
    )
    spec.override(epochs=1, batch_size=16, probe_size=8)
    return spec


def test_search_through_the_runner_finds_the_band_and_resumes(tmp_path, oracle_pm):
    spec = oracle_spec(eps=[0, 8, 16, 24, 32])
    runs = search_boundaries(spec, tmp_path, min_rate=1.0, eps_step=1, options={"device": "cpu"})
    (run,) = runs
    (t,) = run.search.thresholds()
    # both seeds collapse from eps 11 (seed 1 starts one later) to 20, and again from 34 (beyond the range)
    assert (t.below, t.eps) == (10.0, 11.0)
    assert t.transitions == [(10.0, 11.0), (20.0, 21.0)]
    assert (t.outcome.k, t.outcome.n, t.below_outcome.k) == (2, 2, 1)
    files = list(iter_results(tmp_path))
    assert len(files) == run.cells_trained == len(run.search.outcomes) * 2
    assert run.cells_trained < 33 * 2
    again = search_boundaries(spec, tmp_path, min_rate=1.0, eps_step=1, options={"device": "cpu"})[0]
    assert again.cells_trained == 0 and again.cells_reused == run.cells_trained
    # the cells are ordinary: `cobench run` over a searched eps finds them finished
    spec.override(eps=[11])
    assert Runner(spec, tmp_path, options={"device": "cpu"}).run().skipped == 2
    (row,) = rows(runs)
    assert row["threshold_eps"] == 11.0 and row["dense_cells"] == 33 * 2
    assert table(rows(runs)).row_count == 1


def test_two_dimensional_search_and_phase_diagram(tmp_path, oracle_pm):
    spec = oracle_spec(eps=[24, 28, 32], injections=["low-freq"], betas=[0, 8], seeds=[0])
    runs = search_boundaries(
        spec, tmp_path, min_rate=1.0, eps_step=1, beta_step=1, two_d=True, options={"device": "cpu"}
    )
    found = {t.beta: (t.below, t.eps) for t in runs[0].search.thresholds()}
    assert found[0.0] == (None, 24.0) or found[0.0][1] is None  # no CO at beta 0 within 24..32
    assert found[8.0] == (25.0, 26.0)  # eps >= 34 - 8
    assert png_size(phase_diagram(runs))[0] > 300


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_bad_search_options_fail_before_training(tmp_path, oracle_pm):
    with pytest.raises(ConfigError, match="min-rate"):
        search_boundaries(oracle_spec(eps=[0, 8]), tmp_path, min_rate=0)
    with pytest.raises(ConfigError, match="at least two coarse eps"):
        search_boundaries(oracle_spec(eps=[8]), tmp_path)
    with pytest.raises(ConfigError, match="'co' evaluator"):
        search_boundaries(tiny_grid_spec(["oracle-method"], eps=[0, 8], evaluators=["clean"]), tmp_path)
    assert not list(tmp_path.iterdir())


def test_boundary_command_prints_the_table_and_writes_json_and_plot(tmp_path, oracle_pm):
    import json

    from click.testing import CliRunner

    from cobench.boundary.commands import boundary

    out = CliRunner().invoke(
        boundary,
        [
            "--datasets",
            "oracle-data",
            "--models",
            "oracle-model",
            "--methods",
            "oracle-method",
            "--evaluators",
            "co",
            "--eps",
            "0,16,32",
            "--seeds",
            "0",
            "--epochs",
            "1",
            "--eps-step",
            "2",
            "--device",
            "cpu",
            "--results-dir",
            str(tmp_path / "r"),
            "-o",
            str(tmp_path / "b.json"),
            "--plot",
            str(tmp_path / "b.png"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "oracle-method" in out.output and "9 cells trained, 0 reused" in out.output
    (row,) = json.loads((tmp_path / "b.json").read_text())["thresholds"]
    assert (row["threshold_eps"], row["below_eps"]) == (10.0, 8.0) and row["dense_cells"] == 17
    assert png_size((tmp_path / "b.png").read_bytes())[0] > 300
    bad = CliRunner().invoke(boundary, ["--eps", "8", "--results-dir", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "at least two coarse eps" in bad.output
