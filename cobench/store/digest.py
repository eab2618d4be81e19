"""A SHA-256 digest over a result's content, written into the result by ``execute_cell``.

It catches a result edited after the run (``pgd_acc`` changed in place): reading recomputes
it and a mismatch marks the file. It is not a signature: whoever edits a file on purpose can
recompute it, as they can ``cell_id``. What a determined forger cannot fake is re-evaluation
of the saved weights (``cobench leaderboard verify``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, TypeVar

DIGEST_KEY = "digest"
#: a result record: a typed one as the worker builds it, or the plain dict of a file
R = TypeVar("R", bound=Mapping[str, object])


def result_digest(result: Mapping[str, object]) -> str:
    """The digest of any result record (a result's own, or a plain dict read from its file)."""
    body = {k: v for k, v in result.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_plain)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _plain(obj: Any) -> Any:
    if hasattr(obj, "item") and getattr(obj, "numel", lambda: 1)() == 1:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def with_digest(result: R) -> R:
    """``result`` as the JSON it will be written as (a copy of the same record), with its digest set."""
    plain = json.loads(json.dumps(result, default=_plain, allow_nan=False))
    plain[DIGEST_KEY] = result_digest(plain)
    return plain


def digest_matches(result: Mapping[str, object]) -> bool | None:
    """True/False when ``result`` carries a digest, None when it predates digests."""
    if DIGEST_KEY not in result:
        return None
    return result[DIGEST_KEY] == result_digest(result)
