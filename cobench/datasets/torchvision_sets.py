"""Datasets read through torchvision from ``--data-dir`` in their standard on-disk layouts.

| name | layout under DIR (= ``--data-dir``) |
| --- | --- |
| ``cifar10`` | ``DIR/cifar-10-batches-py/{data_batch_1..5, test_batch[, batches.meta]}`` |
| ``cifar100`` | ``DIR/cifar-100-python/{train, test[, meta]}`` |
| ``svhn`` | ``DIR/{train_32x32.mat, test_32x32.mat}`` (or under ``DIR/svhn/``) |
| ``mnist`` | ``DIR/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (or ``.gz``) |
| ``fashion-mnist`` | the same under ``DIR/FashionMNIST/raw/`` |

Every file is checked against the MD5 sum torchvision publishes for it *before* it is parsed
(``verify_checksums=true``, the default); a mismatch is an error naming the file. MNIST's
published sums are those of the ``.gz`` archives: a plain idx file is accepted when it equals
its verified archive's content, and refused when no archive is there to vouch for it.
Subsets or re-packed copies in the same format need ``verify_checksums=false``; CIFAR pickles
are then still read with an arrays-only unpickler (:mod:`cobench.datasets.integrity`), never
with ``pickle.load``. Gzipped MNIST idx files are decompressed next to themselves (as
torchvision's download does).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from cobench import hookimpl
from cobench.api import DataContext, Dataset, DataSplits
from cobench.atomic import write_atomic
from cobench.datasets.common import to_tensor_images
from cobench.datasets.integrity import ChecksumError, load_array_pickle, opt_out_hint, verify_gunzipped, verify_md5
from cobench.errors import CobenchError, ConfigError

__all__ = ["to_tensor_images", "CIFAR10", "CIFAR100", "SVHN", "MNIST", "FashionMNIST"]


def missing_error(label: str, data_dir: str, missing: list[Path], layout: str, download: bool) -> CobenchError:
    hint = "" if download else "; pass --download to fetch it where the network allows"
    shown = ", ".join(str(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return CobenchError(
        f"cannot read {label} from data dir {data_dir!r}: missing {shown} (expected layout: {layout}){hint}"
    )


def corrupt_error(
    label: str, data_dir: str, exc: BaseException, layout: str, culprit: Path | None = None
) -> CobenchError:
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

    def __init__(self, augment: bool = True, verify_checksums: bool = True):
        self.augment = augment
        self.verify_checksums = verify_checksums

    def verify(self, root: str) -> None:
        """Check every file this dataset will parse against torchvision's published MD5 sums."""
        for path, md5 in self.published_md5(root).items():
            verify_md5(self.name, path, md5)

    def published_md5(self, root: str) -> dict[Path, str]:
        """Each file :meth:`read` parses -> the MD5 sum torchvision publishes for it."""
        raise NotImplementedError

    # subclasses implement required_files, published_md5, download and read
    # (and split_files/parse_file to name a corrupt file)
    def root(self, data_dir: str) -> str:
        return data_dir

    def required_files(self, root: str) -> list[Path]:
        raise NotImplementedError

    def read(self, root: str, train: bool) -> tuple[Any, Any]:
        """(uint8 images (N,H,W,C) or (N,H,W), integer labels) of one split."""
        raise NotImplementedError

    def download(self, root: str) -> None:
        """Fetch the missing files into ``root`` (torchvision's downloader checks the archive's MD5)."""
        raise NotImplementedError

    def fetch(self, root: str, data_dir: str) -> None:
        try:
            self.download(root)
        except CobenchError:
            raise
        except Exception as exc:
            raise CobenchError(
                f"downloading {self.name} into {data_dir!r} failed: {type(exc).__name__}: {exc}"
            ) from None

    def split_files(self, root: str, train: bool) -> list[Path]:
        """The files of one split, each parseable on its own by :meth:`parse_file` (error reporting only)."""
        return []

    def parse_file(self, path: Path) -> Any:
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
        if missing:
            self.fetch(root, ctx.data_dir)
        if self.verify_checksums:
            self.verify(root)
        splits = []
        for train in (True, False):
            try:
                x, y = self.read(root, train)
            except CobenchError:
                raise
            except Exception as exc:
                raise corrupt_error(self.name, ctx.data_dir, exc, self.layout, self.culprit(root, train)) from None
            xt, yt = to_tensor_images(x), torch.as_tensor(np.asarray(y), dtype=torch.long).reshape(-1)
            if len(xt) != len(yt) or len(xt) == 0:
                raise CobenchError(
                    f"{self.name} {'train' if train else 'test'} split in {ctx.data_dir!r} has "
                    f"{len(xt)} images but {len(yt)} labels (expected layout: {self.layout})"
                )
            if yt.min() < 0 or yt.max() >= self.num_classes:
                raise CobenchError(
                    f"{self.name} labels in {ctx.data_dir!r} must be in 0..{self.num_classes - 1}, "
                    f"found {yt.min().item()}..{yt.max().item()}"
                )
            splits += [xt, yt]
        train_x, train_y, test_x, test_y = splits
        return DataSplits(
            train_x,
            train_y,
            test_x,
            test_y,
            self.num_classes,
            self.mean,
            self.std,
            crop_padding=self.crop_padding_default if self.augment else 0,
            flip=self.flip_default and self.augment,
        )


# --------------------------------------------------------------------------- CIFAR
class CIFAR10(TorchvisionDataset):
    """CIFAR-10 (32x32 RGB, 10 classes) from --data-dir (cifar-10-batches-py/); crop+flip augmentation.

    ``first_per_file=N`` keeps the first N images of each official batch file (``data_batch_1..5``
    and ``test_batch``; CIFAR-100's ``train`` and ``test``), in file order: a subset that the full
    download and a copy holding only those rows (``../shared/data/cifar10-prefix``) give alike.
    ``fingerprints`` maps each file name to :func:`selection_fingerprint` of its selected rows;
    a file whose selection hashes otherwise (another selection, a damaged copy) is refused with
    an error naming it. A prefix copy fails torchvision's MD5 sums of the full files, so it is read
    with ``verify_checksums=false`` (the arrays-only unpickler) and vouched for by the fingerprints.
    ``train_first_per_file=M`` then keeps only the first M of those rows of each *training* file,
    after the fingerprint check, so a smaller training set (the induced-CO study's data axis) is
    read from the same vouched-for copy and evaluated on the same test images.
    """

    name = "cifar10"
    num_classes = 10
    #: shape and split sizes, known without the files (cost estimates: leaderboard build --dry-run)
    image_shape = (3, 32, 32)
    train_size, test_size = 50000, 10000
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2471, 0.2435, 0.2616)
    layout = "DIR/cifar-10-batches-py/{data_batch_1..5, test_batch} (CIFAR-10 python version)"
    ranges = {"first_per_file": ">= 1", "train_first_per_file": ">= 1"}
    recorded_when_set = ("train_first_per_file",)  # added later: the cells stored before it keep their ids

    def __init__(
        self,
        augment: bool = True,
        verify_checksums: bool = True,
        first_per_file: int | None = None,
        fingerprints: dict[str, str] | None = None,
        train_first_per_file: int | None = None,
    ):
        super().__init__(augment=augment, verify_checksums=verify_checksums)
        self.first_per_file = first_per_file
        self.fingerprints = self.checked_fingerprints(fingerprints)
        if first_per_file is not None and train_first_per_file is not None and train_first_per_file > first_per_file:
            raise ConfigError(
                f"{self.name}: train_first_per_file = {train_first_per_file} exceeds first_per_file = "
                f"{first_per_file}; it keeps a prefix of each training file's selected rows, so it must be at most that"
            )
        self.train_first_per_file = train_first_per_file

    def checked_fingerprints(self, fingerprints: Any) -> dict[str, str] | None:
        if fingerprints is None:
            return None
        tv = self.tv_class()
        names = [f for f, _ in tv.train_list + tv.test_list]
        if (
            not isinstance(fingerprints, dict)
            or sorted(fingerprints) != sorted(names)
            or not all(isinstance(v, str) and v.startswith("sha256:") for v in fingerprints.values())
        ):
            raise ConfigError(
                f"{self.name}: fingerprints must map every file ({', '.join(names)}) to a "
                f"'sha256:...' fingerprint of its selected rows, got {fingerprints!r}"
            )
        return dict(fingerprints)

    def tv_class(self) -> type[Any]:
        from torchvision.datasets import CIFAR10 as TV

        return TV

    def required_files(self, root: str) -> list[Path]:
        return self.split_files(root, True) + self.split_files(root, False)

    def published_md5(self, root: str) -> dict[Path, str]:
        tv = self.tv_class()
        return {Path(root, tv.base_folder, f): md5 for f, md5 in tv.train_list + tv.test_list}

    def download(self, root: str) -> None:
        # torchvision's own class verifies the archive and every extracted file before it unpickles
        self.tv_class()(root=root, train=True, download=True)

    def read(self, root: str, train: bool) -> tuple[Any, Any]:
        selected = [self.selected_rows(p) for p in self.split_files(root, train)]
        if train and self.train_first_per_file is not None:
            selected = [
                (data[: self.train_first_per_file], labels[: self.train_first_per_file]) for data, labels in selected
            ]
        x = np.vstack([data for data, _ in selected]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.concatenate([labels for _, labels in selected])
        return x, y

    def selected_rows(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 data (n, 3072), int64 labels (n,)) of one batch file, cut to ``first_per_file`` and
        checked against its expected fingerprint."""
        entry = self.parse_file(path)
        data = np.asarray(entry["data"])
        if data.dtype != np.uint8:  # a re-packed copy (read unverified): refuse what a cast would wrap
            if data.size and (data.dtype.kind not in "iu" or data.min() < 0 or data.max() > 255):
                raise CobenchError(
                    f"{self.name}: {str(path)!r} holds pixel values of type {data.dtype} outside "
                    f"0..255; CIFAR images are uint8 ({self.layout})"
                )
            data = data.astype(np.uint8)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
            raise CobenchError(
                f"{self.name}: {str(path)!r} holds data of shape {data.shape} and {len(labels)} labels; "
                f"expected N x 3072 uint8 images and N labels ({self.layout})"
            )
        n = self.first_per_file
        if n is not None:
            if len(data) < n:
                raise CobenchError(
                    f"{self.name}: {str(path)!r} holds {len(data)} images, fewer than "
                    f"first_per_file = {n}; use the official file or a smaller first_per_file"
                )
            data, labels = data[:n], labels[:n]
        if self.fingerprints is not None:
            expected, got = self.fingerprints[path.name], selection_fingerprint(data, labels)
            if got != expected:
                which = f"its first {n} images" if n is not None else "its images"
                raise ChecksumError(
                    f"{self.name}: {str(path)!r}: {which} and labels have fingerprint {got}, but the definition "
                    f"expects {expected}: a different selection or a damaged copy, so it was not used; "
                    "replace it with the official file (or a true prefix of it)"
                )
        return data, labels

    def split_files(self, root: str, train: bool) -> list[Path]:
        tv = self.tv_class()
        return [Path(root, tv.base_folder, f) for f, _ in (tv.train_list if train else tv.test_list)]

    def parse_file(self, path: Path) -> dict[str, Any]:
        entry = load_array_pickle(path)
        if not isinstance(entry, dict) or "data" not in entry or ("labels" not in entry and "fine_labels" not in entry):
            raise KeyError("data/labels")
        return entry


def selection_fingerprint(data: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 over a batch file's selected rows: the uint8 image bytes (n x 3072, row order)
    then the labels as little-endian int64. Independent of the pickle's own bytes, so the full
    official file and a re-pickled prefix copy of it agree."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(data, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return "sha256:" + digest.hexdigest()


def prefix_fingerprints(dataset: CIFAR10, data_dir: str) -> dict[str, str]:
    """``{file name: fingerprint}`` of ``dataset``'s selection under ``data_dir``: what a board's
    ``[params.datasets.cifar10] fingerprints`` records."""
    root = dataset.root(data_dir)
    unchecked = type(dataset)(verify_checksums=False, first_per_file=dataset.first_per_file)  # no expected prints
    return {
        path.name: selection_fingerprint(*unchecked.selected_rows(path))
        for path in dataset.split_files(root, True) + dataset.split_files(root, False)
    }


class CIFAR100(CIFAR10):
    """CIFAR-100 (32x32 RGB, 100 fine classes) from --data-dir (cifar-100-python/); crop+flip augmentation."""

    name = "cifar100"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    layout = "DIR/cifar-100-python/{train, test} (CIFAR-100 python version, fine labels)"

    def tv_class(self) -> type[Any]:
        from torchvision.datasets import CIFAR100 as TV

        return TV


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

    def published_md5(self, root: str) -> dict[Path, str]:
        from torchvision.datasets import SVHN as TV

        return {Path(root, TV.split_list[split][1]): TV.split_list[split][2] for split in ("train", "test")}

    def download(self, root: str) -> None:
        from torchvision.datasets import SVHN as TV

        for split in ("train", "test"):
            TV(root=root, split=split, download=True)  # checks the downloaded file's MD5

    def read(self, root: str, train: bool) -> tuple[Any, Any]:
        from torchvision.datasets import SVHN as TV

        class Present(TV):  # MD5 already checked by verify() where the user wants it (a .mat runs no code)
            def _check_integrity(self) -> bool:
                return os.path.isfile(os.path.join(self.root, self.filename))

        ds = Present(root=root, split="train" if train else "test")
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

    def tv_class(self) -> type[Any]:
        from torchvision.datasets import MNIST as TV

        return TV

    def required_files(self, root: str) -> list[Path]:
        raw = Path(root, self.folder, "raw")
        out = []
        for f in self.FILES:
            plain, packed = raw / f, raw / f"{f}.gz"
            out.append(packed if packed.is_file() and not plain.is_file() else plain)
        return out

    def published_md5(self, root: str) -> dict[Path, str]:
        raw = Path(root, self.folder, "raw")
        return {raw / name: md5 for name, md5 in self.tv_class().resources}

    def verify(self, root: str) -> None:
        raw = Path(root, self.folder, "raw")
        for archive, md5 in self.published_md5(root).items():
            plain = raw / archive.name.removesuffix(".gz")
            if not archive.is_file():
                raise ChecksumError(
                    f"{self.name}: {str(plain)!r} cannot be verified: torchvision publishes MD5 sums for the "
                    f"archive {archive.name!r} only, and it is not in {str(raw)!r}; put it there, or, "
                    + opt_out_hint(self.name)
                )
            verify_md5(self.name, archive, md5)
            if plain.is_file():
                verify_gunzipped(self.name, plain, archive)

    def download(self, root: str) -> None:
        self.tv_class()(root=root, train=True, download=True)  # checks each archive's MD5

    def read(self, root: str, train: bool) -> tuple[Any, Any]:
        raw = Path(root, self.folder, "raw")
        for f in self.FILES:
            plain, packed = raw / f, raw / f"{f}.gz"
            if packed.is_file() and not plain.is_file():
                _gunzip(packed, plain)
        ds = self.tv_class()(root=root, train=train)
        return ds.data, ds.targets

    def split_files(self, root: str, train: bool) -> list[Path]:
        prefix = "train" if train else "t10k"
        return [Path(root, self.folder, "raw", f) for f in self.FILES if f.startswith(prefix)]

    def parse_file(self, path: Path) -> None:
        from torchvision.datasets.mnist import read_image_file, read_label_file

        (read_image_file if "images" in path.name else read_label_file)(str(path))


def _gunzip(src: Path, dst: Path) -> None:
    try:
        with gzip.open(src, "rb") as fin:
            write_atomic(dst, lambda fout: shutil.copyfileobj(fin, fout))
    except PermissionError as exc:
        raise CobenchError(
            f"cannot decompress {str(src)!r} next to itself ({exc.strerror}); "
            f"decompress it yourself (gunzip -k) or make {str(src.parent)!r} writable"
        ) from None


class FashionMNIST(MNIST):
    """Fashion-MNIST (28x28 grey, 10 classes) from --data-dir (FashionMNIST/raw/ idx files); crop+flip augmentation."""

    name = "fashion-mnist"
    mean = (0.2860,)
    std = (0.3530,)
    folder = "FashionMNIST"
    layout = "DIR/FashionMNIST/raw/{train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte (plain or .gz)"
    flip_default = True  # garments are left-right symmetric up to pose

    def tv_class(self) -> type[Any]:
        from torchvision.datasets import FashionMNIST as TV

        return TV


@hookimpl
def register_datasets(register):
    for cls in (CIFAR10, CIFAR100, SVHN, MNIST, FashionMNIST):
        register(cls)
