"""A cell's weights as safetensors files in a content-addressed weights store (``--save-models``).

safetensors holds tensors and nothing else: loading one runs no code, unlike a pickled
``torch.save`` checkpoint, so a leaderboard can re-evaluate a stranger's weights safely.

The weights do not go into git beside the results: a result records their SHA-256, their size
and the store they went to (:class:`WeightsRecord`), and the bytes live in a
:class:`WeightsStore` under ``<sha256>.safetensors``. A store is any fsspec URL (a local folder,
``file://``, ``s3://``, ``gs://``, ``hf://``; ``https://`` read-only), by default a folder in
the user's cache (:func:`default_store_url`). Reading checks the hash, so a store cannot hand
back other weights than the result names. See docs/weights.md.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cobench.errors import CobenchError
from cobench.store.records import WeightsEntry

#: the suffix of a weights file, in a store and (legacy) beside a result
WEIGHTS_SUFFIX = ".safetensors"
#: the environment variable naming the default weights store
STORE_ENV = "COBENCH_WEIGHTS_STORE"
#: the result keys of the final model's and the best epoch's (``training.val_size``) weights
FINAL, BEST = "weights", "best_weights"
#: fsspec protocols that only read (a write to them is refused before any training)
READ_ONLY_PROTOCOLS = ("http", "https")


def weights_bytes(model: nn.Module) -> bytes:
    """The model's state dict (parameters and buffers, on the CPU) as safetensors bytes."""
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()})


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class WeightsRecord:
    """What a result records about its weights: their hash, size and where they were stored.

    ``store`` is the URL they went to (``None``: not recorded, look in the local store);
    ``file`` only in results written before the store existed: a file beside the result."""

    sha256: str
    size: int | None = None
    store: str | None = None
    file: str | None = None

    @classmethod
    def of(cls, data: bytes, store: str | None = None) -> WeightsRecord:
        return cls(sha256=sha256_hex(data), size=len(data), store=store)

    @classmethod
    def from_json(cls, entry: WeightsEntry) -> WeightsRecord:
        return cls(sha256=entry["sha256"], size=entry.get("size"), store=entry.get("store"), file=entry.get("file"))

    def to_json(self) -> WeightsEntry:
        entry = WeightsEntry(sha256=self.sha256)
        if self.size is not None:
            entry["size"] = self.size
        if self.store is not None:
            entry["store"] = self.store
        if self.file is not None:
            entry["file"] = self.file
        return entry

    @property
    def short(self) -> str:
        return f"sha256 {self.sha256[:16]}..."


def result_weights(result: dict[str, Any], key: str = FINAL) -> WeightsRecord | None:
    """The record under ``key`` (:data:`FINAL` or :data:`BEST`) of ``result``, or None."""
    entry = result.get(key)
    return WeightsRecord.from_json(entry) if entry else None


def default_store_url() -> str:
    """``$COBENCH_WEIGHTS_STORE``, else ``$XDG_CACHE_HOME/cobench/weights``, else ``~/.cache/cobench/weights``."""
    if os.environ.get(STORE_ENV, "").strip():
        return os.environ[STORE_ENV].strip()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return str(Path(cache) / "cobench" / "weights")


class WeightsTampered(CobenchError):
    """A store holds a file under a hash that is not the hash of its bytes."""


class WeightsMissing(CobenchError):
    """No store that was asked holds the weights a result names."""


class WeightsStore:
    """A folder of ``<sha256>.safetensors`` files behind any fsspec URL."""

    def __init__(self, url: str | None = None):
        given = (url if url and url.strip() else default_store_url()).strip()
        scheme = given.split("://", 1)[0].lower() if "://" in given else "file"
        if "://" not in given:  # a folder: recorded absolute, so a result names it from any directory
            given = str(Path(given).expanduser().absolute())
        self.url = given
        self.local = scheme in ("file", "local")
        self.read_only = scheme in READ_ONLY_PROTOCOLS
        if not self.read_only:  # opened now: a store that cannot be opened fails before any work
            self.fs  # noqa: B018

    @functools.cached_property
    def _opened(self) -> tuple[Any, str]:
        import fsspec

        try:
            fs, root = fsspec.core.url_to_fs(self.url)
        except (ValueError, ImportError) as exc:
            raise CobenchError(
                f"weights store {self.url!r} cannot be opened: {exc} (a local folder, or a file://, s3://, gs://, "
                "https:// or hf:// URL whose fsspec backend is installed)"
            ) from None
        return fs, root.rstrip("/")

    @property
    def fs(self) -> Any:
        """The fsspec file system behind the store."""
        return self._opened[0]

    @property
    def root(self) -> str:
        """The store's folder on :attr:`fs`."""
        return self._opened[1]

    def __repr__(self) -> str:
        return f"WeightsStore({self.url!r})"

    def path(self, sha256: str) -> str:
        return f"{self.root}/{sha256}{WEIGHTS_SUFFIX}"

    def has(self, sha256: str) -> bool:
        try:
            return bool(self.fs.exists(self.path(sha256)))
        except OSError:
            return False

    def check_writable(self) -> None:
        """Fail, in one line, before any training when weights could not be written here."""
        if self.read_only:
            raise CobenchError(
                f"weights store {self.url!r} is read-only (https); write weights to a local folder or a "
                "file://, s3://, gs:// or hf:// store (--weights-store or $" + STORE_ENV + ")"
            )
        if self.local:
            try:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CobenchError(f"weights store {self.url!r} cannot be created: {exc.strerror or exc}") from None
            if not os.access(self.root, os.W_OK):
                raise CobenchError(f"weights store {self.url!r} is not writable")

    def put(self, data: bytes) -> WeightsRecord:
        """Store ``data`` under its SHA-256 (kept if already there) and return its record."""
        from cobench.atomic import write_atomic

        self.check_writable()
        record = WeightsRecord.of(data, store=self.url)
        path = self.path(record.sha256)
        try:
            if self.fs.exists(path) and self.fs.size(path) == len(data) and not (self.local and self.damaged(path)):
                return record
            if self.local:  # a crash mid-write never leaves a partial file under the hash
                write_atomic(Path(path), data)
            else:
                self.fs.pipe_file(path, data)
        except OSError as exc:
            raise OSError(exc.errno, f"weights store {self.url!r}: {exc.strerror or exc}") from exc
        return record

    def damaged(self, path: str) -> bool:
        """Whether the file at ``path`` does not hash to the name it is stored under."""
        return sha256_hex(self.fs.cat_file(path)) + WEIGHTS_SUFFIX != path.rsplit("/", 1)[-1]

    def get(self, sha256: str) -> bytes | None:
        """The bytes stored under ``sha256``; None when the store does not have them.

        Raises :class:`WeightsTampered` when the file's bytes do not hash to ``sha256``."""
        path = self.path(sha256)
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CobenchError(f"weights store {self.url!r}: {path} cannot be read: {exc.strerror or exc}") from None
        if sha256_hex(data) != sha256:
            raise WeightsTampered(
                f"weights file {path} in store {self.url!r} does not hash to the SHA-256 it is named by "
                f"(it hashes to {sha256_hex(data)[:16]}...): refused, it is not the model that produced the result"
            )
        return data


def fetch_weights(record: WeightsRecord, result_path: Path, store: WeightsStore) -> tuple[bytes, str]:
    """The bytes ``record`` names and where they came from: ``store`` first, then the store the
    result records, then (results from before the store) the file beside the result.

    Weights fetched from elsewhere are kept in ``store`` when it is writable, so a second
    verification reads them locally. A file whose hash differs is refused, wherever it is."""
    where: list[str] = [store.url]
    data = store.get(record.sha256)
    if data is not None:
        return data, store.url
    if record.store and record.store != store.url:
        where.append(record.store)
        data = WeightsStore(record.store).get(record.sha256)
        if data is not None:
            try:  # a copy for next time; verifying does not depend on it
                store.put(data)
            except (CobenchError, OSError):
                pass
            return data, record.store
    if record.file:
        beside = legacy_file(result_path, record)
        where.append(str(beside))
        if beside.is_file():
            data = beside.read_bytes()
            if sha256_hex(data) != record.sha256:
                raise WeightsTampered(
                    f"weights file {str(beside)!r} does not have the SHA-256 its result records "
                    f"({record.sha256[:16]}...): refused, it is not the model that produced the result"
                )
            return data, str(beside)
    raise WeightsMissing(
        f"weights of {str(result_path)!r} ({record.short}) are in none of: {', '.join(where)}; fetch them into "
        f"a store (`cobench weights import FILE --store URL`) and name it with --weights-store"
    )


def legacy_file(result_path: Path, record: WeightsRecord) -> Path:
    """The weights file beside ``result_path`` that a result from before the store names."""
    name = record.file or ""
    if not name or Path(name).name != name:
        raise CobenchError(f"result file {str(result_path)!r}: weights file {name!r} must sit beside it")
    return Path(result_path).parent / name


def weights_fetched(record: WeightsRecord, result_path: Path, store: WeightsStore) -> bool:
    """Whether ``record``'s weights can be read without a download: in ``store`` or beside the result."""
    if store.has(record.sha256):
        return True
    return bool(record.file) and (Path(result_path).parent / str(record.file)).is_file()


def load_weights(model: nn.Module, data: bytes, where: str) -> None:
    """Load safetensors ``data`` (read from ``where``) into ``model``, strictly."""
    from safetensors.torch import load

    try:
        state = load(data)
        model.load_state_dict({k: v.to(next(model.parameters()).device) for k, v in state.items()}, strict=True)
    except Exception as exc:
        raise CobenchError(f"weights from {where} do not fit the result's model: {type(exc).__name__}: {exc}") from None
