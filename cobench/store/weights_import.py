"""``cobench weights import``: put existing ``.safetensors`` files into a weights store and make
the results beside them name the weights by hash instead of by file.

This is how weights written before the store existed (a ``<result>.safetensors`` beside each
result, recorded as ``{"file", "sha256"}``) move into it, and how weights restored from git
history or downloaded by hand become visible to ``cobench leaderboard verify``. A result is
rewritten only when its digest still matches and the file is the one it records: import never
launders an edited result or swaps a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cobench.errors import CobenchError
from cobench.store.digest import digest_matches, with_digest
from cobench.store.results import write_json
from cobench.store.weights import FINAL, WEIGHTS_SUFFIX, WeightsRecord, WeightsStore, result_weights


@dataclass(frozen=True)
class Imported:
    """One weights file put into the store, and what became of the result beside it."""

    path: Path
    record: WeightsRecord
    #: the result beside the file, if any
    result: Path | None
    #: whether that result was rewritten to name the weights by hash (False: it already did)
    rewritten: bool

    def line(self) -> str:
        size = f"{self.record.size} bytes"
        text = f"{self.path} -> {self.record.short} ({size})"
        if self.result is None:
            return text + "; no result beside it"
        return text + (
            f"; {self.result} now names it by hash" if self.rewritten else f"; {self.result} already names it"
        )


def weights_files(paths: list[Path]) -> list[Path]:
    """The ``.safetensors`` files among ``paths`` and under the folders among them, sorted."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(f for f in p.rglob(f"*{WEIGHTS_SUFFIX}") if f.is_file())
        elif p.is_file() and p.suffix == WEIGHTS_SUFFIX:
            found.append(p)
        elif p.exists():
            raise CobenchError(f"{str(p)!r} is not a {WEIGHTS_SUFFIX} file; give weights files or folders of them")
        else:
            raise CobenchError(f"{str(p)!r} does not exist; give {WEIGHTS_SUFFIX} files or folders of them")
    return sorted(dict.fromkeys(found))


def import_file(path: Path, store: WeightsStore, recorded_store: str | None) -> Imported:
    """Put ``path`` into ``store``; rewrite the result beside it (``<stem>.json``) to name it by
    hash and size (and ``recorded_store``, when given), refusing a result it does not belong to."""
    data = path.read_bytes()
    stored = store.put(data)
    record = WeightsRecord(sha256=stored.sha256, size=stored.size, store=recorded_store)
    result_path = path.with_suffix(".json")
    if not result_path.is_file():
        return Imported(path, record, None, False)
    try:
        result = json.loads(result_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CobenchError(f"result file {str(result_path)!r} beside {str(path)!r} cannot be read: {exc}") from None
    recorded = result_weights(result, FINAL)
    if recorded is None:
        raise CobenchError(f"result file {str(result_path)!r} records no weights; {str(path)!r} is not its model")
    if recorded.sha256 != record.sha256:
        raise CobenchError(
            f"{str(path)!r} does not have the SHA-256 its result {str(result_path)!r} records "
            f"({recorded.short}): it is not the model that produced the result; not imported into its result"
        )
    if recorded.file is None and recorded.size == record.size and recorded_store in (None, recorded.store):
        return Imported(path, record, result_path, False)
    if digest_matches(result) is False:
        raise CobenchError(
            f"result file {str(result_path)!r} was edited after its run (its digest does not match); not rewriting it"
        )
    keep_store = recorded_store or (recorded.store if recorded.file is None else None)
    new_record = WeightsRecord(sha256=record.sha256, size=record.size, store=keep_store)
    write_json(result_path, with_digest({**result, FINAL: new_record.to_json()}))
    return Imported(path, new_record, result_path, True)
