"""The sequential executor's run of the tiny grid, which every parallel executor must reproduce."""

from __future__ import annotations

import pytest

from cobench.run.runner import Runner
from cobench.testing import tiny_grid_spec
from tests.scale.test_executors import curves


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The two-cell tiny grid run by the sequential executor: what parallel executors must reproduce."""
    out = tmp_path_factory.mktemp("local")
    summary = Runner(tiny_grid_spec(["fgsm", "n-fgsm"]), out, options={"device": "cpu"}).run()
    assert summary.ran == 2 and not summary.failed
    return curves(out)
