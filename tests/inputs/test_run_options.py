"""Run options that do not apply or cannot work fail before training with one line naming the
option and what is valid (issue 21): device strings (parsed in one place, cobench.run.device),
executor options, checkpoint flags and directory, an empty --loggers. A claim file that is
not a claim, and a checkpoint that cannot be read, are named and set aside instead of
blocking or failing the cell."""

from __future__ import annotations

import os
import time

import pytest
import torch

from cobench.errors import ConfigError
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.run.checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from cobench.run.claims import ClaimKeeper, claim_path, read_claim
from cobench.run.device import parse_device
from cobench.store.results import result_header, result_path, write_json
from tests.conftest import cli_run

#: a grid that trains in seconds, should a check below ever let it through
TINY = ["run", "--methods", "fgsm", "--eps", "8", "--epochs", "1", "--evaluators", "clean", "--results-dir", "r"]

#: (extra arguments, exit status, words of the message's last line)
CASES = [
    (["--device", "cpu:5"], 2, ["device 'cpu:5'", "cpu has no device 5"]),
    (["--device", "meta"], 2, ["device 'meta' is not one cobench trains on", "auto, cpu, cuda, cuda:N or mps"]),
    (["--device", "xla"], 2, ["device 'xla'", "valid: auto, cpu"]),
    (["--device", "gpu"], 2, ["unknown device 'gpu'", "valid: auto, cpu"]),
    (["--device", "cuda:x"], 2, ["unknown device 'cuda:x'"]),
    (["--workers", "0"], 2, ["--workers", "0 is not in the range x>=1"]),
    (["--workers", "-2"], 2, ["--workers"]),
    (["--cells-per-device", "2"], 2, ["--cells-per-device does not apply to executor 'local'", "local-parallel, ray"]),
    (["--ray-address", "10.0.0.1:6379"], 2, ["--ray-address does not apply to executor 'local'", "ray"]),
    (["--executor", "local-parallel", "--ray-address", "10.0.0.1:6379"], 2, ["--ray-address does not apply"]),
    (
        ["--executor", "submitit", "--executor-param", "mem_gb=lots"],
        2,
        ["executors.submitit.mem_gb = 'lots'", "expected an integer"],
    ),
    (["--executor", "local-parallel", "--executor-param", "workers=-1"], 2, ["executors.local-parallel.workers = -1"]),
    (["--no-checkpoints", "--keep-checkpoints"], 2, ["--keep-checkpoints needs checkpoints", "--no-checkpoints"]),
    (["--no-checkpoints", "--checkpoint-dir", "ck"], 2, ["--checkpoint-dir needs checkpoints"]),
    (["--checkpoint-dir", "afile"], 2, ["checkpoint dir 'afile' is not writable: it is a file, not a directory"]),
    (["--checkpoint-dir", "afile/sub"], 2, ["checkpoint dir 'afile/sub' is not writable"]),
    (["--loggers", ""], 2, ["--loggers is empty", "cobench list loggers"]),
]


@pytest.mark.parametrize("extra, status, words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_run_option_is_refused_before_training(tmp_path, monkeypatch, extra, status, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory")
    out = cli_run([*TINY, *extra])
    assert out.exit_code == status, out.output
    line = out.output.strip().splitlines()[-1]
    assert all(w in line for w in words), out.output
    assert not list(tmp_path.rglob("*.json")), "nothing may be trained"


@pytest.mark.parametrize("name", ["mps", "cuda", "cuda:3"])
def test_a_device_that_is_not_there_is_refused_even_with_nothing_to_train(tmp_path, monkeypatch, pm, name):
    if name.startswith("cuda") and torch.cuda.device_count() > 3 or name == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"{name} exists here")
    monkeypatch.chdir(tmp_path)
    spec = GridSpec(methods=["fgsm"], eps=[8], evaluators=["clean"])
    spec.training.epochs = 1
    spec.normalize()
    (cell,) = resolve(spec, pm.registry)
    write_json(
        result_path(tmp_path / "r", cell),
        {**result_header(cell, "2026-01-01T00:00:00+00:00"), "status": "ok", "metrics": {"clean_acc": 0.5}},
    )
    out = cli_run([*TINY, "--device", name])
    assert out.exit_code == 2 and f"device {name!r}" in out.output, out.output
    assert "not available" in out.output or "CUDA device(s)" in out.output, out.output


@pytest.mark.parametrize("name, device", [("auto", None), ("cpu", "cpu"), ("cpu:0", "cpu"), (" cpu ", "cpu")])
def test_good_device_strings_parse(name, device):
    parsed = parse_device(name)
    assert (parsed if parsed is None else parsed.type) == device


def test_parse_device_refuses_what_torch_accepts_but_cobench_cannot_train_on():
    for name in ("meta", "xla", "cpu:1", "mps:1"):
        with pytest.raises(ConfigError):
            parse_device(name)


@pytest.mark.parametrize("content", [b"garbage\x00\xff", b"[1, 2]", b'{"host": 3}', b""])
def test_a_claim_that_cannot_be_read_is_stale_and_named(tmp_path, content):
    result = tmp_path / "cell.json"
    path = claim_path(result)
    path.write_bytes(content)
    assert read_claim(path).stale_reason() is None  # it may be being written right now
    old = time.time() - 60
    os.utime(path, (old, old))
    why = read_claim(path).stale_reason()
    assert why is not None and str(path) in why and "treated as stale" in why
    with ClaimKeeper() as keeper:
        ok, stale, reason = keeper.acquire(path)
        assert ok and stale is not None and str(path) in reason  # taken over, with the file named
        assert read_claim(path).is_mine()
        keeper.release(path)


@pytest.mark.parametrize("content", [b"garbage", b"PK\x03\x04 truncated zip"])
def test_a_corrupt_checkpoint_is_set_aside_and_named(tmp_path, capsys, content):
    path = checkpoint_path(tmp_path, "abc")
    path.write_bytes(content)
    assert load_checkpoint(path, "abc") is None  # the cell restarts from scratch
    assert not path.exists() and path.with_name("abc.pt.corrupt").read_bytes() == content
    err = capsys.readouterr().err
    assert f"checkpoint {path} cannot be read" in err and "restarts from its first epoch" in err
    save_checkpoint(path, {"cell_id": "abc", "epoch": 1})  # a good one still loads
    assert load_checkpoint(path, "abc")["epoch"] == 1


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_unreachable_ray_address_is_named_instead_of_hanging(address):
    from cobench.errors import CobenchError
    from cobench.executors.ray_executor import check_reachable

    with pytest.raises(CobenchError) as info:  # port 1 on loopback refuses at once
        check_reachable(address, timeout=5.0)
    assert f"--ray-address {address!r}: cannot reach the Ray cluster" in info.value.message


@pytest.mark.extras
def test_an_unreachable_ray_address_fails_the_run_before_training(tmp_path, monkeypatch):
    # without the extra the run stops earlier, at "install cobench[ray]" (tests/scale/test_executors.py)
    pytest.importorskip("ray", reason="needs the ray extra: pip install -e '.[ray]'")
    monkeypatch.chdir(tmp_path)
    out = cli_run([*TINY, "--executor", "ray", "--ray-address", "127.0.0.1:1"])
    assert out.exit_code == 2 and "cannot reach the Ray cluster" in out.output, out.output
    assert not list(tmp_path.rglob("*.json"))
