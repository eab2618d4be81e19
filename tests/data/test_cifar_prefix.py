"""A CIFAR subset defined as the first N images of each official batch file: the full files and a
re-pickled copy holding only those rows give the same arrays and the same fingerprints, and a
different selection or a damaged copy is refused naming the file."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from cobench.api import DataContext
from cobench.datasets.integrity import ChecksumError, md5_of
from cobench.datasets.torchvision_sets import prefix_fingerprints
from cobench.errors import CobenchError, ConfigError

from . import formats

FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def load(pm, name: str, data_dir: Path, **params):
    return pm.registry.get("datasets", name)(**params).load(DataContext(data_dir=str(data_dir), download=False, seed=0))


def write_prefix_copy(
    full: Path, copy: Path, n: int, folder: str = "cifar-10-batches-py", files: list[str] = FILES
) -> None:
    """What ../shared/data/cifar10-prefix is: each file's first n rows, pickled anew (protocol 4)."""
    (copy / folder).mkdir(parents=True)
    for name in files:
        with open(full / folder / name, "rb") as f:
            entry = pickle.load(f)
        key = "labels" if "labels" in entry else "fine_labels"
        cut = {**entry, "data": entry["data"][:n], key: entry[key][:n]}
        with open(copy / folder / name, "wb") as f:
            pickle.dump(cut, f, protocol=4)


@pytest.fixture
def full_and_prefix(tmp_path, monkeypatch):
    """Official-format CIFAR-10 (6 rows per batch file) whose MD5 sums are made the published ones,
    and a copy of the first 4 rows of each file."""
    import torchvision.datasets as tvd

    full, copy = tmp_path / "full", tmp_path / "prefix"
    formats.write_cifar10(full, n_train=30, n_test=6)
    folder = full / "cifar-10-batches-py"
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f, md5_of(folder / f)] for f in FILES[:5]])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5_of(folder / "test_batch")]])
    write_prefix_copy(full, copy, 4)
    return full, copy


def test_the_full_files_and_a_prefix_copy_give_the_same_selection(pm, full_and_prefix):
    full, copy = full_and_prefix
    from_full = load(pm, "cifar10", full, first_per_file=4)  # the full files still pass the published MD5s
    prints = prefix_fingerprints(pm.registry.get("datasets", "cifar10")(first_per_file=4), str(full))
    from_copy = load(pm, "cifar10", copy, first_per_file=4, verify_checksums=False, fingerprints=prints)
    assert from_full.train_x.shape == (20, 3, 32, 32) and from_full.test_x.shape == (4, 3, 32, 32)
    for split in ("train_x", "train_y", "test_x", "test_y"):
        assert getattr(from_full, split).equal(getattr(from_copy, split))
    everything = load(pm, "cifar10", full)
    # the first 4 of each file's 6, in file order
    keep = np.concatenate([np.arange(6 * i, 6 * i + 4) for i in range(5)])
    assert from_full.train_x.equal(everything.train_x[keep])
    assert from_full.train_y.equal(everything.train_y[keep])
    assert from_full.test_x.equal(everything.test_x[:4])
    assert sorted(prints) == sorted(FILES) and prints == prefix_fingerprints(
        pm.registry.get("datasets", "cifar10")(first_per_file=4), str(copy)
    )


def test_the_prefix_copy_fails_the_published_checksums(pm, full_and_prefix):
    _, copy = full_and_prefix
    with pytest.raises(ChecksumError, match=r"data_batch_1' does not match torchvision's published MD5"):
        load(pm, "cifar10", copy, first_per_file=4)


def test_another_selection_is_refused_naming_the_file(pm, full_and_prefix):
    full, copy = full_and_prefix
    prints = prefix_fingerprints(pm.registry.get("datasets", "cifar10")(first_per_file=4), str(full))
    with pytest.raises(
        ChecksumError,
        match=r"cifar10: '.*cifar-10-batches-py/data_batch_1': its first 3 images and "
        r"labels have fingerprint sha256:[0-9a-f]{64}, but the definition expects " + prints["data_batch_1"],
    ):
        load(pm, "cifar10", copy, first_per_file=3, verify_checksums=False, fingerprints=prints)


def test_a_damaged_copy_is_refused_naming_the_file(pm, full_and_prefix):
    full, copy = full_and_prefix
    prints = prefix_fingerprints(pm.registry.get("datasets", "cifar10")(first_per_file=4), str(full))
    path = copy / "cifar-10-batches-py" / "data_batch_3"
    with open(path, "rb") as f:
        entry = pickle.load(f)
    entry["data"][2, 100] ^= 1  # one bit of one pixel
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=4)
    with pytest.raises(
        ChecksumError, match=r"data_batch_3': its first 4 images .* a different selection or a damaged copy"
    ):
        load(pm, "cifar10", copy, first_per_file=4, verify_checksums=False, fingerprints=prints)
    entry["data"][2, 100] ^= 1
    entry["labels"][1] = (entry["labels"][1] + 1) % 10  # labels are fingerprinted too
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=4)
    with pytest.raises(ChecksumError, match="data_batch_3'"):
        load(pm, "cifar10", copy, first_per_file=4, verify_checksums=False, fingerprints=prints)


def test_a_copy_shorter_than_the_selection_is_named(pm, full_and_prefix):
    _, copy = full_and_prefix
    with pytest.raises(CobenchError, match=r"'.*data_batch_1' holds 4 images, fewer than first_per_file = 5"):
        load(pm, "cifar10", copy, first_per_file=5, verify_checksums=False)


@pytest.mark.parametrize("bad", [{"data_batch_1": "sha256:00"}, {f: "md5:00" for f in FILES}, "sha256:00"])
def test_fingerprints_must_cover_every_file(pm, bad):
    with pytest.raises(ConfigError, match=r"cifar10: fingerprints must map every file \(data_batch_1, .*test_batch\)"):
        pm.registry.get("datasets", "cifar10")(fingerprints=bad)


def test_cifar100_takes_the_first_rows_of_train_and_test(pm, tmp_path):
    formats.write_cifar100(tmp_path / "full", n_train=30, n_test=10)
    write_prefix_copy(tmp_path / "full", tmp_path / "copy", 7, "cifar-100-python", ["train", "test"])
    full = load(pm, "cifar100", tmp_path / "full", first_per_file=7, verify_checksums=False)
    cls = pm.registry.get("datasets", "cifar100")
    prints = prefix_fingerprints(cls(first_per_file=7), str(tmp_path / "full"))
    copy = load(pm, "cifar100", tmp_path / "copy", first_per_file=7, verify_checksums=False, fingerprints=prints)
    assert full.train_x.shape == (7, 3, 32, 32) and full.train_y.equal(copy.train_y) and full.test_x.equal(copy.test_x)


def test_the_shared_prefix_copy_matches_its_own_fingerprints(pm):
    """The real data the cifar10-prefix boards use, where this checkout has it beside it."""
    root = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-prefix"
    if not root.is_dir():
        pytest.skip(f"{root} is not here")
    from cobench.leaderboard.spec import load_leaderboard

    boards = sorted(Path(__file__).resolve().parents[2].glob("leaderboards/cifar10-prefix-*.toml"))
    assert boards, "no cifar10-prefix board is defined"
    for board in boards:
        params = load_leaderboard(board).grid.params["datasets"]["cifar10"]
        data = load(pm, "cifar10", root, **params)
        assert len(data.train_x) == 5000 and len(data.test_x) == 1000


@pytest.mark.parametrize(
    "data, fragment",
    [
        (lambda x: x.astype(np.int64) + 300, "holds pixel values of type int64 outside 0..255"),
        (lambda x: x.astype(np.float32) / 255, "holds pixel values of type float32 outside 0..255"),
        (lambda x: x[:3], "holds data of shape (3, 3072) and 4 labels"),
    ],
)
def test_a_copy_with_bad_pixels_or_counts_is_named(pm, full_and_prefix, data, fragment):
    """Read unverified, a re-packed file whose pixels a uint8 cast would wrap, or whose image and
    label counts differ, is refused naming the file."""
    _, copy = full_and_prefix
    path = copy / "cifar-10-batches-py" / "data_batch_2"
    with open(path, "rb") as f:
        entry = pickle.load(f)
    entry["data"] = data(entry["data"])
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=4)
    with pytest.raises(CobenchError, match=r"cifar10: '.*data_batch_2' " + re.escape(fragment)):
        load(pm, "cifar10", copy, verify_checksums=False)


def test_a_smaller_training_set_is_cut_after_the_fingerprint_check_and_keeps_the_test_images(pm, full_and_prefix):
    """``train_first_per_file`` (the induced-CO study's data axis) reads the vouched-for prefix copy,
    keeps the first rows of each training file in file order, and leaves the test files whole."""
    full, copy = full_and_prefix
    prints = prefix_fingerprints(pm.registry.get("datasets", "cifar10")(first_per_file=4), str(full))
    whole = load(pm, "cifar10", copy, first_per_file=4, verify_checksums=False, fingerprints=prints)
    cut = load(
        pm, "cifar10", copy, first_per_file=4, verify_checksums=False, fingerprints=prints, train_first_per_file=2
    )
    keep = np.concatenate([np.arange(4 * i, 4 * i + 2) for i in range(5)])  # rows 0-1 of each of the 5 files
    assert cut.train_x.equal(whole.train_x[keep]) and cut.train_y.equal(whole.train_y[keep])
    assert cut.test_x.equal(whole.test_x) and cut.test_y.equal(whole.test_y)


def test_a_training_prefix_longer_than_the_selection_is_refused(pm):
    with pytest.raises(ConfigError, match=r"cifar10: train_first_per_file = 5 exceeds first_per_file = 4"):
        pm.registry.get("datasets", "cifar10")(first_per_file=4, train_first_per_file=5)


def test_a_training_prefix_is_recorded_only_when_set(pm):
    """Cells stored before ``train_first_per_file`` existed keep their ids; a cell that sets it records it."""
    from cobench.grid.resolve import resolve_component

    plain = resolve_component(pm.registry, "datasets", "cifar10", {"datasets": {"cifar10": {"first_per_file": 1000}}})
    cut = resolve_component(
        pm.registry,
        "datasets",
        "cifar10",
        {"datasets": {"cifar10": {"first_per_file": 1000, "train_first_per_file": 500}}},
    )
    assert "train_first_per_file" not in plain.params and cut.params["train_first_per_file"] == 500
