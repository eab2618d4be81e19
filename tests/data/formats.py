"""Writers of tiny datasets in each real on-disk format (used by the dataset tests)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def class_images(n: int, shape: tuple[int, ...], classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose brightness depends on the class (learnable), labels 0..classes-1."""
    r = rng(seed)
    y = np.arange(n) % classes
    base = (y * (200 // max(1, classes - 1)))[:, None]
    x = np.clip(base + r.integers(0, 40, (n, int(np.prod(shape)))), 0, 255).astype(np.uint8)
    return x.reshape(n, *shape), y


def write_cifar10(root: Path, n_train: int = 20, n_test: int = 10) -> None:
    """cifar-10-batches-py/: five pickled train batches, a test batch and batches.meta."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    x, y = class_images(n_train, (3, 32, 32), 10)
    for i, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump(
                {
                    "batch_label": f"training batch {i} of 5",
                    "data": x[part].reshape(len(part), -1),
                    "labels": y[part].tolist(),
                },
                f,
            )
    xt, yt = class_images(n_test, (3, 32, 32), 10, seed=1)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": xt.reshape(n_test, -1), "labels": yt.tolist()}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def write_cifar100(root: Path, n_train: int = 30, n_test: int = 10) -> None:
    """cifar-100-python/: pickled train and test with fine and coarse labels, and meta."""
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    for name, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        x, _ = class_images(n, (3, 32, 32), 10, seed)
        fine = (np.arange(n) * 37) % 100
        with open(d / name, "wb") as f:
            pickle.dump(
                {"data": x.reshape(n, -1), "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist()}, f
            )
    with open(d / "meta", "wb") as f:
        pickle.dump(
            {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}, f
        )


def write_svhn(root: Path, n_train: int = 20, n_test: int = 10) -> None:
    """train_32x32.mat / test_32x32.mat: X (32, 32, 3, N) uint8, y (N, 1) with 10 for the digit 0."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        x, y = class_images(n, (32, 32, 3), 10, seed)
        labels = np.where(y == 0, 10, y).astype(np.uint8)[:, None]
        savemat(root / f"{name}_32x32.mat", {"X": np.ascontiguousarray(x.transpose(1, 2, 3, 0)), "y": labels})


def idx_bytes(arr: np.ndarray) -> bytes:
    """The big-endian idx format of LeCun's MNIST files (unsigned bytes)."""
    magic = (0x08 << 8) | arr.ndim
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 20, n_test: int = 10, gz: bool = False) -> None:
    """<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = class_images(n, (28, 28), 10, seed)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            data = idx_bytes(arr)
            path = raw / f"{prefix}-{kind}-ubyte"
            if gz:
                with gzip.open(f"{path}.gz", "wb") as f:
                    f.write(data)
            else:
                path.write_bytes(data)


def write_imagefolder(
    root: Path, classes=("cat", "dog", "emu"), per_class: int = 6, size=(12, 12), mode: str = "RGB", test_sizes=None
) -> None:
    """train/<class>/*.png and test/<class>/*.png written with PIL."""
    from PIL import Image

    channels = 3 if mode == "RGB" else 1
    for split, n in (("train", per_class), ("test", max(1, per_class // 2))):
        for k, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True)
            x, _ = class_images(n, (size[1], size[0], channels), 1, seed=k + 10 * (split == "test"))
            x = np.clip(x.astype(int) + 60 * k, 0, 255).astype(np.uint8)
            for i in range(n):
                arr = x[i] if channels == 3 else x[i, ..., 0]
                img = Image.fromarray(arr, mode=None)
                if test_sizes and split == "test" and i == 0:
                    img = img.resize(test_sizes)
                img.save(d / f"{i}.png")


def write_npz(
    path: Path,
    layout: str = "nhwc",
    dtype: str = "uint8",
    n_train: int = 24,
    n_test: int = 12,
    shape=(8, 8, 3),
    classes: int = 4,
) -> None:
    x, y = class_images(n_train, shape, classes)
    xt, yt = class_images(n_test, shape, classes, seed=1)
    if layout == "nchw":
        x, xt = x.transpose(0, 3, 1, 2), xt.transpose(0, 3, 1, 2)
    if dtype == "float":
        x, xt = x.astype(np.float32) / 255, xt.astype(np.float32) / 255
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt[:, None])
