"""Any image-folder tree: ``imagefolder:PATH`` with ``PATH/train/<class>/*.png`` and ``PATH/test/<class>/*``.

Classes are the sub-folders of ``train/`` in sorted order (torchvision's ImageFolder rule);
``test/`` may lack classes but may not add new ones. Images must all have the same size
unless ``size`` is given (then every image is resized to size x size, bilinear). Channels:
3 (RGB) unless every training image is greyscale, or as forced by ``channels`` (1 or 3).
A relative PATH is looked up from the working directory, then under ``--data-dir``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cobench import hookimpl
from cobench.api import DataContext, Dataset, DataSplits
from cobench.datasets.common import channel_stats, resolve_path, to_tensor_images
from cobench.errors import CobenchError, ConfigError

LAYOUT = "PATH/train/<class>/<image> and PATH/test/<class>/<image> (png, jpg, bmp, ...)"


class ImageFolderDataset(Dataset):
    """Any ImageFolder tree (imagefolder:PATH with train/ and test/ sub-folders of class folders)."""

    name = "imagefolder"
    ranges = {"size": ">= 0", "channels": ">= 0", "crop_padding": ">= -1"}  # crop_padding -1: the default (size // 8)
    spec_arg = "path"

    def __init__(
        self,
        path: str | None = None,
        size: int = 0,
        channels: int = 0,
        augment: bool = True,
        crop_padding: int = -1,
        flip: bool = True,
    ):
        if channels not in (0, 1, 3):
            raise ConfigError(f"imagefolder: channels must be 0 (auto), 1 or 3, got {channels!r}")
        if size < 0:
            raise ConfigError(f"imagefolder: size must be >= 0 (0 keeps the original size), got {size!r}")
        self.path, self.size, self.channels = path, size, channels
        self.augment, self.crop_padding, self.flip = augment, crop_padding, flip

    def load(self, ctx: DataContext) -> DataSplits:
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

        if not self.path:
            raise ConfigError("imagefolder needs a path: write imagefolder:PATH")
        root = resolve_path(self.path, ctx.data_dir)
        train_dir, test_dir = root / "train", root / "test"
        for d in (train_dir, test_dir):
            if not d.is_dir():
                raise CobenchError(
                    f"cannot read imagefolder {str(root)!r}: no {d.name}/ folder (expected layout: {LAYOUT})"
                )
        try:
            classes, class_to_idx = find_classes(str(train_dir))
        except FileNotFoundError as exc:
            raise CobenchError(f"cannot read imagefolder {str(root)!r}: {exc} (expected layout: {LAYOUT})") from None
        test_classes = sorted(e.name for e in test_dir.iterdir() if e.is_dir())
        extra = [c for c in test_classes if c not in class_to_idx]
        if extra:
            raise CobenchError(f"imagefolder {str(root)!r}: test/ has classes not in train/: {', '.join(extra)}")
        samples = {}
        for split, d in (("train", train_dir), ("test", test_dir)):
            try:
                samples[split] = make_dataset(str(d), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
            except FileNotFoundError as exc:
                raise CobenchError(f"imagefolder {str(root)!r}: {exc}") from None
            if not samples[split]:
                raise CobenchError(
                    f"imagefolder {str(root)!r}: no images in {split}/ (extensions: {', '.join(IMG_EXTENSIONS)})"
                )
        mode = {1: "L", 3: "RGB"}.get(self.channels) or self._auto_mode(samples["train"], root)
        tensors, first = {}, None
        for split in ("train", "test"):
            arrays = self._read_all(samples[split], mode, root, first)
            first = arrays[0].shape
            x = np.stack(arrays)
            tensors[split] = (to_tensor_images(x), torch.tensor([t for _, t in samples[split]], dtype=torch.long))
        mean, std = channel_stats(tensors["train"][0])
        h = tensors["train"][0].shape[-1]
        padding = (max(1, h // 8) if self.crop_padding < 0 else self.crop_padding) if self.augment else 0
        return DataSplits(
            *tensors["train"],
            *tensors["test"],
            len(classes),
            mean,
            std,
            crop_padding=padding,
            flip=self.flip and self.augment,
        )

    @staticmethod
    def _auto_mode(samples: list[tuple[str, int]], root: Path) -> str:
        from PIL import Image, UnidentifiedImageError

        for path, _ in samples:
            try:
                with Image.open(path) as im:
                    if im.mode not in ("L", "1", "I;16", "I"):
                        return "RGB"
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise CobenchError(f"imagefolder {str(root)!r}: cannot read image {path!r}: {exc}") from None
        return "L"

    def _read_all(
        self, samples: list[tuple[str, int]], mode: str, root: Path, first: tuple[int, ...] | None
    ) -> list[np.ndarray]:
        from PIL import Image, UnidentifiedImageError

        out = []
        for path, _ in samples:
            try:
                with Image.open(path) as im:
                    im = im.convert(mode)
                    if self.size:
                        im = im.resize((self.size, self.size), Image.Resampling.BILINEAR)
                    arr = np.asarray(im, dtype=np.uint8)
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise CobenchError(f"imagefolder {str(root)!r}: cannot read image {path!r}: {exc}") from None
            if first is None:
                first = arr.shape
            elif arr.shape != first:
                raise CobenchError(
                    f"imagefolder {str(root)!r}: {path!r} is {arr.shape[1]}x{arr.shape[0]} but earlier images are "
                    f"{first[1]}x{first[0]}; pass size=N (e.g. --param datasets.imagefolder.size=32) to resize all images"
                )
            out.append(arr)
        return out


@hookimpl
def register_datasets(register):
    register(ImageFolderDataset)
