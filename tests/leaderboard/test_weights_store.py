"""The weights store: ``--save-models`` writes each cell's final and best-epoch weights to a folder
or fsspec URL under their SHA-256, the result records hash, size and store; ``verify`` fetches them
by hash (the store given, then the one the result names, then a legacy file beside it), refuses a
file whose hash differs and says which weights are missing; ``cobench weights import`` moves
weights written beside results into a store."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cobench.errors import CobenchError
from cobench.store.digest import digest_matches, with_digest
from cobench.store.weights import (
    WeightsMissing,
    WeightsRecord,
    WeightsStore,
    WeightsTampered,
    default_store_url,
    fetch_weights,
)
from tests.conftest import cli_run
from tests.leaderboard.conftest import lb_cli

BOARD = (
    '[leaderboard]\ntitle = "weights"\nmetrics = ["best_pgd_acc"]\n'
    '[grid]\ndatasets = ["digits"]\nmodels = ["small-cnn"]\nmethods = ["fgsm"]\neps = [16]\n'
    'evaluators = ["clean", "pgd"]\n'
    "[training]\nepochs = 2\nval_size = 64\n[evaluation]\nprobe_size = 32\n"
    "[params.models.small-cnn]\nwidth = 4\n[params.datasets.digits]\nsize = 8\n"
    "[params.evaluators.pgd]\nsteps = 2\n"
)


def store_folder(url: str) -> Path:
    return Path(url.removeprefix("file://"))


@pytest.mark.parametrize("as_url", [False, True], ids=["folder", "file-url"])
def test_a_store_keeps_bytes_under_their_hash(tmp_path, as_url):
    folder = tmp_path / "store"
    url = folder.as_uri() if as_url else str(folder)
    store = WeightsStore(url)
    data = b"not really safetensors, but bytes"
    record = store.put(data)
    assert record == WeightsRecord(hashlib.sha256(data).hexdigest(), len(data), url)
    on_disk = folder / f"{record.sha256}.safetensors"
    assert on_disk.read_bytes() == data and list(folder.iterdir()) == [on_disk]
    assert store.get(record.sha256) == data and store.has(record.sha256)
    assert store.put(data) == record and list(folder.iterdir()) == [on_disk]  # stored once
    missing = hashlib.sha256(b"other").hexdigest()
    assert store.get(missing) is None and not store.has(missing)
    on_disk.write_bytes(data + b"!")  # tampered under the same name
    with pytest.raises(WeightsTampered, match="does not hash to the SHA-256 it is named by"):
        store.get(record.sha256)
    assert store.put(data) == record and store.get(record.sha256) == data  # storing again repairs it


def test_a_relative_folder_is_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = WeightsStore("rel/store").put(b"x")
    assert record.store == str(tmp_path / "rel" / "store") and (tmp_path / "rel" / "store").is_dir()


def test_the_default_store_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COBENCH_WEIGHTS_STORE", "file:///somewhere/w")
    assert default_store_url() == "file:///somewhere/w"
    monkeypatch.delenv("COBENCH_WEIGHTS_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_url() == str(tmp_path / "xdg" / "cobench" / "weights")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_url() == str(tmp_path / "home" / ".cache" / "cobench" / "weights")


def test_bad_stores_are_refused_in_one_line(tmp_path):
    with pytest.raises(CobenchError, match="weights store 'nosuch://x' cannot be opened") as exc:
        WeightsStore("nosuch://x")
    assert "\n" not in str(exc.value)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CobenchError, match="cannot be created"):
        WeightsStore(str(blocker / "store")).check_writable()
    out = cli_run(["run", "--weights-store", str(tmp_path / "s"), "--epochs", "1"])
    assert out.exit_code == 2 and "add --save-models" in out.output


def test_an_https_store_is_read_only_and_save_models_refuses_it_before_training(tmp_path):
    with pytest.raises(CobenchError, match="weights store 'https://example.invalid/w' is read-only"):
        WeightsStore("https://example.invalid/w").check_writable()
    results = tmp_path / "results"
    out = cli_run(
        ["run", "--methods", "fgsm", "--eps", "8", "--epochs", "1", "--save-models"]
        + ["--weights-store", "https://example.invalid/w"]
        + ["--results-dir", str(results), "--device", "cpu"]
    )
    assert out.exit_code != 0 and "is read-only" in out.output, out.output
    assert not list(results.rglob("eps*.json"))  # nothing trained


def legacy_result(folder: Path, data: bytes, name: str = "eps8-none-beta0-seed0-0123456789abcdef") -> Path:
    """A result written before the store: its weights beside it, recorded by file name and hash."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.safetensors").write_bytes(data)
    result = {
        "cell_id": "0123456789abcdef",
        "config_hash": "0123456789abcdef",
        "metrics": {"clean_acc": 0.5},
        "weights": {"file": f"{name}.safetensors", "sha256": hashlib.sha256(data).hexdigest()},
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(with_digest(result)))
    return path


def test_fetching_tries_the_store_then_the_results_store_then_the_file_beside_it(tmp_path):
    local, remote = WeightsStore(str(tmp_path / "local")), WeightsStore((tmp_path / "remote").as_uri())
    data = b"weights of a cell"
    path = legacy_result(tmp_path / "results", data)
    legacy = WeightsRecord.from_json(json.loads(path.read_text())["weights"])
    assert fetch_weights(legacy, path, local) == (data, str(path.with_suffix(".safetensors")))
    path.with_suffix(".safetensors").write_bytes(data + b"!")
    with pytest.raises(WeightsTampered, match="does not have the SHA-256 its result records"):
        fetch_weights(legacy, path, local)

    record = remote.put(data)
    assert fetch_weights(record, path, local) == (data, remote.url)
    assert local.get(record.sha256) == data  # kept in the local store for next time
    assert fetch_weights(record, path, local) == (data, local.url)

    gone = WeightsRecord(hashlib.sha256(b"never stored").hexdigest(), 12, remote.url)
    with pytest.raises(WeightsMissing, match=f"are in none of: {local.url}, {remote.url}") as exc:
        fetch_weights(gone, path, local)
    assert "\n" not in str(exc.value)


def test_import_moves_legacy_weights_into_a_store_and_names_them_by_hash(tmp_path):
    data = b"legacy weights"
    path = legacy_result(tmp_path / "results" / "m", data)
    before = json.loads(path.read_text())
    url = (tmp_path / "store").as_uri()
    out = cli_run(["weights", "import", str(tmp_path / "results"), "--store", url])
    assert out.exit_code == 0, out.output
    after = json.loads(path.read_text())
    sha = hashlib.sha256(data).hexdigest()
    assert after["weights"] == {"sha256": sha, "size": len(data), "store": url}
    assert digest_matches(after) and after["digest"] != before["digest"]
    assert {k: v for k, v in after.items() if k not in ("weights", "digest")} == {
        k: v for k, v in before.items() if k not in ("weights", "digest")
    }  # cell id, config hash and everything else unchanged
    assert WeightsStore(url).get(sha) == data
    assert "1 weights file(s)" in out.output and "1 result(s) rewritten" in out.output

    again = cli_run(["weights", "import", str(path.with_suffix(".safetensors")), "--store", url])
    assert again.exit_code == 0 and "already names it" in again.output and "0 result(s) rewritten" in again.output
    assert json.loads(path.read_text()) == after

    # the default store, not recorded: the result keeps naming the store it already names
    plain = cli_run(["weights", "import", str(path.with_suffix(".safetensors"))])
    assert plain.exit_code == 0 and WeightsStore().get(sha) == data and json.loads(path.read_text()) == after


def test_import_refuses_weights_that_are_not_the_results_and_results_edited_after_their_run(tmp_path):
    path = legacy_result(tmp_path / "a", b"the model")
    before = path.read_text()
    path.with_suffix(".safetensors").write_bytes(b"another model")
    out = cli_run(["weights", "import", str(tmp_path / "a"), "--store", str(tmp_path / "s")])
    assert out.exit_code == 2 and "is not the model that produced the result" in out.output
    assert path.read_text() == before

    edited = legacy_result(tmp_path / "b", b"the model")
    data = json.loads(edited.read_text())
    data["metrics"]["clean_acc"] = 0.99
    edited.write_text(json.dumps(data))
    out = cli_run(["weights", "import", str(tmp_path / "b"), "--store", str(tmp_path / "s")])
    assert out.exit_code == 2 and "was edited after its run" in out.output
    assert json.loads(edited.read_text())["weights"].get("file")

    out = cli_run(["weights", "import", str(tmp_path / "nothing-here")])
    assert out.exit_code == 2 and "does not exist" in out.output


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """The tiny board built with --save-models into a file:// store: (its toml, the store's URL)."""
    root = tmp_path_factory.mktemp("weights-board")
    board = root / "w.toml"
    board.write_text(BOARD)
    url = (tmp_path_factory.mktemp("remote") / "store").as_uri()
    out = lb_cli(["build", str(board), "--device", "cpu", "--save-models", "--weights-store", url])
    assert out.exit_code == 0, out.output
    return board, url


def test_save_models_writes_final_and_best_weights_to_the_store_and_verify_fetches_them(built, tmp_path):
    board, url = built
    work = tmp_path / "board"
    shutil.copytree(board.parent, work)
    board = work / board.name
    (result_file,) = (work / "results" / "w").rglob("eps*.json")
    result = json.loads(result_file.read_text())
    final, best = WeightsRecord.from_json(result["weights"]), WeightsRecord.from_json(result["best_weights"])
    remote = store_folder(url)
    for record in (final, best):
        assert record.store == url and (remote / f"{record.sha256}.safetensors").stat().st_size == record.size
    assert not list(work.rglob("*.safetensors"))  # nothing beside the results

    # the default store (this test's own, empty) lacks them: fetched from the store the result names
    local = WeightsStore()
    out = lb_cli(["verify", str(board), "--all", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert "reproduced: best_clean_acc" in out.output and "0 not reproduced" in out.output
    assert local.has(final.sha256) and local.has(best.sha256)

    out = lb_cli(["verify", str(board), "--all", "--device", "cpu", "--weights-store", url])  # a file:// URL
    assert out.exit_code == 0 and "0 not reproduced" in out.output, out.output

    # tampered in the store asked first: refused in one line, exit 2
    tampered = Path(local.path(best.sha256))
    tampered.write_bytes(tampered.read_bytes()[:-1] + b"\0")
    out = lb_cli(["verify", str(board), "--all", "--device", "cpu"])
    assert out.exit_code == 2 and "does not hash to the SHA-256 it is named by" in out.output
    assert len([ln for ln in out.output.splitlines() if ln.strip()]) == 1, out.output

    # missing everywhere: named, counted, exit 1
    tampered.unlink()
    out = lb_cli(["verify", str(board), "--all", "--device", "cpu", "--weights-store", str(tmp_path / "empty")])
    assert out.exit_code == 0, out.output  # still in the result's own store
    remote.rename(remote.parent / "moved")
    try:
        out = lb_cli(["verify", str(board), "--all", "--device", "cpu", "--weights-store", str(tmp_path / "other")])
    finally:
        (remote.parent / "moved").rename(remote)
    assert out.exit_code == 1 and "weights not fetched:" in out.output and "1 without fetched weights" in out.output


def test_committed_results_name_their_weights_by_hash_and_git_tracks_no_weights():
    root = Path(__file__).resolve().parents[2]
    results = [json.loads(p.read_text()) for p in sorted((root / "leaderboards" / "results").rglob("eps*.json"))]
    records = [r[key] for r in results for key in ("weights", "best_weights") if r.get(key)]
    assert records, "the built boards saved their weights"
    for record in records:
        assert set(record) <= {"sha256", "size", "store"} and record["size"] > 0, record  # no file beside it
    assert all(digest_matches(r) is not False for r in results)
    if shutil.which("git") and (root / ".git").exists():
        tracked = subprocess.run(
            ["git", "-C", str(root), "ls-files", "*.safetensors"], capture_output=True, text=True, check=True
        )
        assert tracked.stdout == "", "model weights belong in the weights store (docs/weights.md), not in git"
