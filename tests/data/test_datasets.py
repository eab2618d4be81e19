"""Datasets in their real on-disk formats: tiny files written here, loaded, trained one epoch."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from cobench.api import DataContext
from cobench.errors import CobenchError
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.run.cell_worker import execute_cell

from . import formats


def load(pm, spec: str, data_dir, download: bool = False, **params):
    """Load a dataset component; the tiny files written here are not the published ones, so the
    torchvision formats load them with checksum verification off unless a test asks for it."""
    from cobench.grid.spec import split_spec

    name, arg = split_spec(spec)
    cls = pm.registry.get("datasets", name)
    if arg is not None:
        params[cls.spec_arg] = arg
    if "verify_checksums" in cls.parameters():
        params.setdefault("verify_checksums", False)
    return cls(**params).load(DataContext(data_dir=str(data_dir), download=download, seed=0))


def train_one_epoch(pm, dataset: str, data_dir, **training) -> dict:
    spec = GridSpec(
        datasets=[dataset],
        methods=["fgsm"],
        eps=[8],
        injections=["low-freq"],
        betas=[8],
        evaluators=["clean", "no-injection-acc"],
    )
    spec.override(epochs=1, batch_size=8, probe_size=8, **training)
    spec.set_param("models.small-cnn.width=4")
    from cobench.grid.spec import split_spec

    name = split_spec(dataset)[0]
    if "verify_checksums" in pm.registry.get("datasets", name).parameters():
        spec.set_param(f"datasets.{name}.verify_checksums=false")
    (cell,) = resolve(spec, pm.registry)
    result = execute_cell(cell.config(), {"device": "cpu", "data_dir": str(data_dir)})
    assert result["status"] == "ok", result.get("error")
    assert result["curves"]["epoch"] == [1] and np.isfinite(result["curves"]["train_loss"][0])
    assert 0 <= result["metrics"]["clean_acc"] <= 1
    return result


# --------------------------------------------------------------------------- torchvision formats
def test_cifar10_pickle_batches_load_exactly_and_train(pm, tmp_path):
    formats.write_cifar10(tmp_path)
    data = load(pm, "cifar10", tmp_path)
    x, y = formats.class_images(20, (3, 32, 32), 10)
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (10, 3, 32, 32)
    assert torch.equal(data.train_x, torch.from_numpy(x).float() / 255)  # CHW rows, batches in order
    assert torch.equal(data.train_y, torch.from_numpy(y))
    assert data.num_classes == 10 and data.crop_padding == 4 and data.flip
    assert not load(pm, "cifar10", tmp_path, augment=False).flip
    train_one_epoch(pm, "cifar10", tmp_path)


def test_cifar100_uses_fine_labels_and_trains(pm, tmp_path):
    formats.write_cifar100(tmp_path)
    data = load(pm, "cifar100", tmp_path)
    assert data.num_classes == 100 and data.train_x.shape == (30, 3, 32, 32)
    assert data.train_y.tolist() == [(i * 37) % 100 for i in range(30)]
    result = train_one_epoch(pm, "cifar100", tmp_path)
    assert result["config"]["dataset"]["name"] == "cifar100"


def test_svhn_mat_files_map_label_10_to_0_and_train(pm, tmp_path):
    formats.write_svhn(tmp_path)
    data = load(pm, "svhn", tmp_path)
    x, y = formats.class_images(20, (32, 32, 3), 10)
    assert data.train_x.shape == (20, 3, 32, 32)
    assert torch.equal(data.train_x, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(data.train_y, torch.from_numpy(y))  # the 10s written for zeros come back as 0
    assert data.crop_padding == 4 and not data.flip  # no flips for digits
    train_one_epoch(pm, "svhn", tmp_path)


def test_svhn_is_also_found_under_a_svhn_subfolder(pm, tmp_path):
    formats.write_svhn(tmp_path / "svhn")
    assert len(load(pm, "svhn", tmp_path).test_x) == 10


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files_plain_or_gzipped_load_and_train(pm, tmp_path, gz):
    formats.write_mnist(tmp_path, gz=gz)
    data = load(pm, "mnist", tmp_path)
    x, y = formats.class_images(20, (28, 28), 10)
    assert data.train_x.shape == (20, 1, 28, 28)
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(x).float() / 255)
    assert torch.equal(data.train_y, torch.from_numpy(y))
    assert data.crop_padding == 2 and not data.flip
    train_one_epoch(pm, "mnist", tmp_path)


def test_fashion_mnist_reads_its_own_folder_and_trains(pm, tmp_path):
    formats.write_mnist(tmp_path, folder="FashionMNIST")
    data = load(pm, "fashion-mnist", tmp_path)
    assert data.train_x.shape == (20, 1, 28, 28) and data.flip
    with pytest.raises(CobenchError, match="MNIST/raw"):
        load(pm, "mnist", tmp_path)  # MNIST is not read from FashionMNIST's folder
    train_one_epoch(pm, "fashion-mnist", tmp_path)


# --------------------------------------------------------------------------- errors of the torchvision formats
def test_missing_data_names_the_path_layout_and_download(pm, tmp_path):
    for name, layout in (
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("svhn", "train_32x32.mat"),
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "FashionMNIST/raw"),
    ):
        with pytest.raises(CobenchError) as err:
            load(pm, name, tmp_path / "nowhere")
        msg = str(err.value.message)
        assert f"cannot read {name} from data dir" in msg and str(tmp_path / "nowhere") in msg
        assert layout in msg and "--download" in msg


def test_truncated_cifar_pickle_is_a_clear_error(pm, tmp_path):
    formats.write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(
        CobenchError,
        match=r"cifar10 files in data dir .* are corrupt or unreadable "
        r"\('.*data_batch_3' fails to parse\): UnpicklingError.*cifar-10-batches-py",
    ):
        load(pm, "cifar10", tmp_path)


def test_cifar_pickle_with_wrong_keys_is_a_clear_error(pm, tmp_path):
    formats.write_cifar100(tmp_path)
    with open(tmp_path / "cifar-100-python" / "test", "wb") as f:
        pickle.dump({"images": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(
        CobenchError, match=r"corrupt or unreadable \('.*cifar-100-python/test' fails to parse\): KeyError"
    ):
        load(pm, "cifar100", tmp_path)


def test_corrupt_svhn_mat_and_idx_files_are_clear_errors(pm, tmp_path):
    formats.write_svhn(tmp_path / "s")
    (tmp_path / "s" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 but not really")
    with pytest.raises(CobenchError, match=r"svhn files in data dir .* are corrupt .*test_32x32.mat' fails to parse"):
        load(pm, "svhn", tmp_path / "s")
    formats.write_mnist(tmp_path / "m")
    img = tmp_path / "m" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:500])
    with pytest.raises(CobenchError, match=r"mnist files in data dir .* are corrupt .*t10k-images-idx3-ubyte' fails"):
        load(pm, "mnist", tmp_path / "m")


def test_labels_out_of_range_are_rejected(pm, tmp_path):
    formats.write_mnist(tmp_path)
    lab = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    lab.write_bytes(formats.idx_bytes(np.full(20, 12)))
    with pytest.raises(CobenchError, match=r"labels .* must be in 0..9, found 12..12"):
        load(pm, "mnist", tmp_path)


# --------------------------------------------------------------------------- ImageFolder
def test_imagefolder_takes_classes_from_train_and_trains(pm, tmp_path):
    formats.write_imagefolder(tmp_path / "pets")
    data = load(pm, f"imagefolder:{tmp_path / 'pets'}", tmp_path)
    assert data.num_classes == 3 and data.train_x.shape == (18, 3, 12, 12) and data.test_x.shape == (9, 3, 12, 12)
    assert data.train_y.tolist() == [0] * 6 + [1] * 6 + [2] * 6  # sorted class folders: cat, dog, emu
    assert data.crop_padding == 1 and data.flip
    assert all(0.0 < m < 1.0 for m in data.mean) and len(data.std) == 3
    # a test split without some class keeps train's class indices
    for f in (tmp_path / "pets" / "test" / "dog").iterdir():
        f.unlink()
    (tmp_path / "pets" / "test" / "dog").rmdir()
    data = load(pm, f"imagefolder:{tmp_path / 'pets'}", tmp_path)
    assert sorted(set(data.test_y.tolist())) == [0, 2]
    train_one_epoch(pm, f"imagefolder:{tmp_path / 'pets'}", tmp_path)


def test_imagefolder_relative_to_data_dir_greyscale_and_resize(pm, tmp_path):
    formats.write_imagefolder(tmp_path / "grey", mode="L", size=(10, 8), test_sizes=(7, 7))
    with pytest.raises(CobenchError, match=r"is 7x7 but earlier images are 10x8; pass size=N"):
        load(pm, "imagefolder:grey", tmp_path)
    data = load(pm, "imagefolder:grey", tmp_path, size=6)  # relative PATH resolved under --data-dir
    assert data.train_x.shape == (18, 1, 6, 6) and data.test_x.shape[1:] == (1, 6, 6)
    assert load(pm, "imagefolder:grey", tmp_path, size=6, channels=3).train_x.shape[1] == 3


def test_imagefolder_errors_name_the_layout(pm, tmp_path):
    (tmp_path / "t" / "train" / "a").mkdir(parents=True)
    with pytest.raises(CobenchError, match=r"no test/ folder \(expected layout: PATH/train/<class>"):
        load(pm, f"imagefolder:{tmp_path / 't'}", tmp_path)
    formats.write_imagefolder(tmp_path / "x", classes=("a", "b"))
    (tmp_path / "x" / "test" / "zebra").mkdir()
    with pytest.raises(CobenchError, match="test/ has classes not in train/: zebra"):
        load(pm, f"imagefolder:{tmp_path / 'x'}", tmp_path)
    (tmp_path / "x" / "test" / "zebra").rmdir()
    (tmp_path / "x" / "train" / "a" / "0.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CobenchError, match=r"cannot read image .*0.png"):
        load(pm, f"imagefolder:{tmp_path / 'x'}", tmp_path)


# --------------------------------------------------------------------------- npz
@pytest.mark.parametrize("layout, dtype", [("nhwc", "uint8"), ("nchw", "uint8"), ("nhwc", "float")])
def test_npz_layouts_and_dtypes_are_detected(pm, tmp_path, layout, dtype):
    path = tmp_path / "d.npz"
    formats.write_npz(path, layout=layout, dtype=dtype)
    data = load(pm, f"npz:{path}", tmp_path)
    x, y = formats.class_images(24, (8, 8, 3), 4)
    assert data.train_x.shape == (24, 3, 8, 8) and data.num_classes == 4
    assert torch.allclose(data.train_x, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, atol=1e-7)
    assert data.test_y.shape == (12,)  # (N, 1) labels are squeezed
    assert data.crop_padding == 0 and not data.flip  # augmentation is opt-in for unknown data
    aug = load(pm, f"npz:{path}", tmp_path, augment=True)
    assert aug.crop_padding == 1 and aug.flip


def test_npz_greyscale_trains_one_epoch(pm, tmp_path):
    path = tmp_path / "grey.npz"
    formats.write_npz(path, shape=(10, 10), classes=3)
    assert load(pm, f"npz:{path}", tmp_path).train_x.shape == (24, 1, 10, 10)
    train_one_epoch(pm, f"npz:{path}", tmp_path)


def test_npz_errors_are_clear(pm, tmp_path):
    with pytest.raises(CobenchError, match="no such file"):
        load(pm, f"npz:{tmp_path / 'none.npz'}", tmp_path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(CobenchError, match=r"is corrupt or not a .npz file"):
        load(pm, f"npz:{bad}", tmp_path)
    keys = tmp_path / "keys.npz"
    np.savez(keys, x=np.zeros((2, 4, 4)), y=np.zeros(2))
    with pytest.raises(CobenchError, match=r"lacks array\(s\) x_train, y_train, x_test, y_test; it has x, y"):
        load(pm, f"npz:{keys}", tmp_path)
    hot = tmp_path / "hot.npz"
    z = np.zeros((4, 5, 5), np.float32)
    np.savez(hot, x_train=z + 3.0, y_train=np.arange(4), x_test=z, y_test=np.arange(4))
    with pytest.raises(CobenchError, match=r"float images must be finite and in \[0, 1\], found 3..3"):
        load(pm, f"npz:{hot}", tmp_path)
    amb = tmp_path / "amb.npz"
    a = np.zeros((4, 3, 5, 3), np.uint8)
    np.savez(amb, x_train=a, y_train=np.arange(4), x_test=a, y_test=np.arange(4))
    with pytest.raises(CobenchError, match="pass layout=nhwc or layout=nchw"):
        load(pm, f"npz:{amb}", tmp_path)
    assert load(pm, f"npz:{amb}", tmp_path, layout="nchw").train_x.shape == (4, 3, 5, 3)
    trunc = tmp_path / "trunc.npz"
    formats.write_npz(trunc)
    trunc.write_bytes(trunc.read_bytes()[:300])
    with pytest.raises(CobenchError, match="corrupt"):
        load(pm, f"npz:{trunc}", tmp_path)


def test_npz_without_path_asks_for_one(pm, tmp_path):
    from cobench.errors import ConfigError

    with pytest.raises(ConfigError, match="write npz:PATH"):
        resolve(GridSpec(datasets=["npz"]), pm.registry)


# --------------------------------------------------------------------------- augmentation switch
def test_augment_switch_reaches_the_training_loop(pm, tmp_path):
    formats.write_cifar10(tmp_path)
    digits_aug = load(pm, "digits", tmp_path, augment=True)
    assert digits_aug.crop_padding == 2 and not digits_aug.flip
    # with augmentation off in the dataset, training does not crop or flip
    off = load(pm, "cifar10", tmp_path, augment=False)
    assert off.crop_padding == 0 and not off.flip
    train_one_epoch(pm, "cifar10", tmp_path, augment=False)


def test_a_failed_download_is_reported_as_such(pm, tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd.CIFAR10, "download", offline)
    with pytest.raises(CobenchError, match=r"downloading cifar10 into .* failed: OSError: network is unreachable"):
        load(pm, "cifar10", tmp_path, download=True)
