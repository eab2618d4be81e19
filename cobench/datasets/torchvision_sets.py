"""Datasets read through torchvision from ``--data-dir`` in their standard on-disk layouts.

| name | layout under DIR (= ``--data-dir``) |
| --- | --- |
| ``cifar10`` | ``DIR/cifar-10-batches-py/{data_batch_1..5, test_batch[, batches.meta]}`` |
| ``cifar100`` | ``DIR/cifar-100-python/{train, test[, meta]}`` |
| ``svhn`` | ``DIR/{train_32x32.mat, test_32x32.mat}`` (or under ``DIR/svhn/``) |
| ``mnist`` | ``DIR/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (or ``.gz``) |
| ``fashion-mnist`` | the same under ``DIR/FashionMNIST/raw/`` |

Files are checked for presence, not against torchvision's MD5 sums, so re-packed or
subsampled copies in the same format load too; a corrupt file gives a clear error. Gzipped
MNIST idx files are decompressed next to themselves (as torchvision's download does).
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from cobench import hookimpl
from cobench.api import DataContext, DataSplits, Dataset
from cobench.errors import CobenchError

from .common import to_tensor_images

__all__ = ["to_tensor_images", "CIFAR10", "CIFAR100", "SVHN", "MNIST", "FashionMNIST"]


def missing_error(label: str, data_dir: str, missing: list[Path], layout: str, download: bool) -> CobenchError:
    hint = "" if download else "; pass --download to fetch it where the network allows"
    shown = ", ".join(str(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return CobenchError(f"cannot read {label} from data dir {data_dir!r}: missing {shown} (expected layout: {layout}){hint}")


def corrupt_error(label: str, data_dir: str, exc: BaseException, layout: str, culprit: Path | None = None) -> CobenchError:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    which = f" ({str(culprit)!r} fails to parse)" if culprit is not None else ""
    return CobenchError(
        f"{label} files in data dir {data_dir!r} are corrupt or unreadable{which}: {detail}; "
        f"expected layout: {layout}. Replace the damaged file(s), or delete them and pass --download"
    )


class TorchvisionDataset(Dataset):
    """Common loading logic: presence check, torchvision read, label check, augmentation flags."""

    num_classes: ClassVar[int] = 10
    mean: ClassVar[tuple[float, ...]] = ()
    std: ClassVar[tuple[float, ...]] = ()
    layout: ClassVar[str] = ""
    #: crop padding and flip used when ``augment`` is on
    crop_padding_default: ClassVar[int] = 4
    flip_default: ClassVar[bool] = True

    def __init__(self, augment: bool = True):
        self.augment = augment

    # subclasses implement required_files and read (and split_files/parse_file to name a corrupt file)
    def root(self, data_dir: str) -> str:
        return data_dir

    def required_files(self, root: str) -> list[Path]:
        raise NotImplementedError

    def read(self, root: str, train: bool, download: bool) -> tuple[Any, Any]:
        """(uint8 images (N,H,W,C) or (N,H,W), integer labels) of one split."""
        raise NotImplementedError

    def split_files(self, root: str, train: bool) -> list[Path]:
        """The files of one split, each parseable on its own by :meth:`parse_file` (error reporting only)."""
        return []

    def parse_file(self, path: Path) -> None:
        raise NotImplementedError

    def culprit(self, root: str, train: bool) -> Path | None:
        """The first file of a split that fails to parse, to name it in the error."""
        for path in self.split_files(root, train):
            try:
                self.parse_file(path)
            except Exception:
                return path
        return None

    def load(self, ctx: DataContext) -> DataSplits:
        root = self.root(ctx.data_dir)
        missing = [p for p in self.required_files(root) if not p.is_file()]
        if missing and not ctx.download:
            raise missing_error(self.name, ctx.data_dir, missing, self.layout, ctx.download)
        splits = []
        for train in (True, False):
            try:
                x, y = self.read(root, train, ctx.download)
            except CobenchError:
                raise
            except Exception as exc:
                if missing:  # a download was attempted
                    raise CobenchError(f"downloading {self.name} into {ctx.data_dir!r} failed: {type(exc).__name__}: {exc}") from None
                raise corrupt_error(self.name, ctx.data_dir, exc, self.layout, self.culprit(root, train)) from None
            xt, yt = to_tensor_images(x), torch.as_tensor(np.asarray(y), dtype=torch.long).reshape(-1)
            if len(xt) != len(yt) or len(xt) == 0:
                raise CobenchError(f"{self.name} {'train' if train else 'test'} split in {ctx.data_dir!r} has "
                                   f"{len(xt)} images but {len(yt)} labels (expected layout: {self.layout})")
            if yt.min() < 0 or yt.max() >= self.num_classes:
                raise CobenchError(f"{self.name} labels in {ctx.data_dir!r} must be in 0..{self.num_classes - 1}, "
                                   f"found {yt.min().item()}..{yt.max().item()}")
            splits += [xt, yt]
        return DataSplits(
            *splits, self.num_classes, self.mean, self.std,
            crop_padding=self.crop_padding_default if self.augment else 0,
            flip=self.flip_default and self.augment,
        )


# --------------------------------------------------------------------------- CIFAR
def _relaxed_cifar(base: type) -> type:
    """torchvision's CIFAR class, checking file presence instead of MD5 sums; meta optional."""

    class Relaxed(base):  # type: ignore[misc, valid-type]
        def _check_integrity(self) -> bool:
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            self.classes = []
            if os.path.isfile(path):
                import pickle

                with open(path, "rb") as f:
                    self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    Relaxed.__name__ = base.__name__
    return Relaxed


class CIFAR10(TorchvisionDataset):
    """CIFAR-10 (32x32 RGB, 10 classes) from --data-dir (cifar-10-batches-py/); crop+flip augmentation."""

    name = "cifar10"
    num_classes = 10
    #: shape and split sizes, known without the files (cost estimates: leaderboard build --dry-run)
    image_shape = (3, 32, 32)
    train_size, test_size = 50000, 10000
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2471, 0.2435, 0.2616)
    layout = "DIR/cifar-10-batches-py/{data_batch_1..5, test_batch} (CIFAR-10 python version)"

    def tv_class(self) -> type:
        from torchvision.datasets import CIFAR10 as TV

        return _relaxed_cifar(TV)

    def required_files(self, root: str) -> list[Path]:
        tv = self.tv_class()
        return [Path(root, tv.base_folder, f) for f, _ in tv.train_list + tv.test_list]

    def read(self, root: str, train: bool, download: bool) -> tuple[Any, Any]:
        ds = self.tv_class()(root=root, train=train, download=download)
        return ds.data, ds.targets

    def split_files(self, root: str, train: bool) -> list[Path]:
        tv = self.tv_class()
        return [Path(root, tv.base_folder, f) for f, _ in (tv.train_list if train else tv.test_list)]

    def parse_file(self, path: Path) -> None:
        import pickle

        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        if "data" not in entry or ("labels" not in entry and "fine_labels" not in entry):
            raise KeyError("data/labels")


class CIFAR100(CIFAR10):
    """CIFAR-100 (32x32 RGB, 100 fine classes) from --data-dir (cifar-100-python/); crop+flip augmentation."""

    name = "cifar100"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    layout = "DIR/cifar-100-python/{train, test} (CIFAR-100 python version, fine labels)"

    def tv_class(self) -> type:
        from torchvision.datasets import CIFAR100 as TV

        return _relaxed_cifar(TV)


# --------------------------------------------------------------------------- SVHN
class SVHN(TorchvisionDataset):
    """SVHN cropped digits (32x32 RGB, 10 classes, label 10 -> 0) from --data-dir; crop augmentation, no flip."""

    name = "svhn"
    num_classes = 10
    image_shape = (3, 32, 32)
    train_size, test_size = 73257, 26032
    mean = (0.4377, 0.4438, 0.4728)
    std = (0.1980, 0.2010, 0.1970)
    layout = "DIR/train_32x32.mat and DIR/test_32x32.mat (or the same under DIR/svhn/)"
    flip_default = False  # digits are not mirror-symmetric

    FILES = {True: "train_32x32.mat", False: "test_32x32.mat"}

    def root(self, data_dir: str) -> str:
        for cand in (data_dir, os.path.join(data_dir, "svhn"), os.path.join(data_dir, "SVHN")):
            if all(os.path.isfile(os.path.join(cand, f)) for f in self.FILES.values()):
                return cand
        return data_dir

    def required_files(self, root: str) -> list[Path]:
        return [Path(root, f) for f in self.FILES.values()]

    def read(self, root: str, train: bool, download: bool) -> tuple[Any, Any]:
        from torchvision.datasets import SVHN as TV

        class Relaxed(TV):
            def _check_integrity(self) -> bool:
                return os.path.isfile(os.path.join(self.root, self.filename))

        ds = Relaxed(root=root, split="train" if train else "test", download=download)
        return ds.data.transpose(0, 2, 3, 1), ds.labels  # torchvision: (N, C, H, W), labels 10 -> 0

    def split_files(self, root: str, train: bool) -> list[Path]:
        return [Path(root, self.FILES[train])]

    def parse_file(self, path: Path) -> None:
        from scipy.io import loadmat

        mat = loadmat(path)
        if "X" not in mat or "y" not in mat:
            raise KeyError("X/y")


# --------------------------------------------------------------------------- MNIST
class MNIST(TorchvisionDataset):
    """MNIST (28x28 grey, 10 classes) from --data-dir (MNIST/raw/ idx files, plain or .gz); crop augmentation, no flip."""

    name = "mnist"
    num_classes = 10
    mean = (0.1307,)
    std = (0.3081,)
    folder = "MNIST"
    layout = "DIR/MNIST/raw/{train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte (plain or .gz)"
    crop_padding_default = 2
    flip_default = False

    FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    def tv_class(self) -> type:
        from torchvision.datasets import MNIST as TV

        return TV

    def required_files(self, root: str) -> list[Path]:
        raw = Path(root, self.folder, "raw")
        out = []
        for f in self.FILES:
            plain, packed = raw / f, raw / f"{f}.gz"
            out.append(packed if packed.is_file() and not plain.is_file() else plain)
        return out

    def read(self, root: str, train: bool, download: bool) -> tuple[Any, Any]:
        raw = Path(root, self.folder, "raw")
        for f in self.FILES:
            plain, packed = raw / f, raw / f"{f}.gz"
            if packed.is_file() and not plain.is_file():
                _gunzip(packed, plain)
        ds = self.tv_class()(root=root, train=train, download=download)
        return ds.data, ds.targets

    def split_files(self, root: str, train: bool) -> list[Path]:
        prefix = "train" if train else "t10k"
        return [Path(root, self.folder, "raw", f) for f in self.FILES if f.startswith(prefix)]

    def parse_file(self, path: Path) -> None:
        from torchvision.datasets.mnist import read_image_file, read_label_file

        (read_image_file if "images" in path.name else read_label_file)(str(path))


def _gunzip(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.partial")
    try:
        with open(tmp, "wb") as fout:
            with gzip.open(src, "rb") as fin:
                shutil.copyfileobj(fin, fout)
        os.replace(tmp, dst)
    except PermissionError as exc:
        raise CobenchError(f"cannot decompress {str(src)!r} next to itself ({exc.strerror}); "
                           f"decompress it yourself (gunzip -k) or make {str(src.parent)!r} writable") from None
    finally:
        tmp.unlink(missing_ok=True)


class FashionMNIST(MNIST):
    """Fashion-MNIST (28x28 grey, 10 classes) from --data-dir (FashionMNIST/raw/ idx files); crop+flip augmentation."""

    name = "fashion-mnist"
    mean = (0.2860,)
    std = (0.3530,)
    folder = "FashionMNIST"
    layout = "DIR/FashionMNIST/raw/{train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte (plain or .gz)"
    flip_default = True  # garments are left-right symmetric up to pose

    def tv_class(self) -> type:
        from torchvision.datasets import FashionMNIST as TV

        return TV


@hookimpl
def register_datasets(register):
    for cls in (CIFAR10, CIFAR100, SVHN, MNIST, FashionMNIST):
        register(cls)
