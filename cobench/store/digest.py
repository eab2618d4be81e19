"""A SHA-256 digest over a result's content, written into the result by ``execute_cell``.

It catches a result edited after the run (``pgd_acc`` changed in place): reading recomputes
it and a mismatch marks the file. It is not a signature: whoever edits a file on purpose can
recompute it, as they can ``cell_id``. What a determined forger cannot fake is re-evaluation
of the saved weights (``cobench leaderboard verify``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

DIGEST_KEY = "digest"


def result_digest(result: dict[str, Any]) -> str:
    body = {k: v for k, v in result.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_plain)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _plain(obj: Any) -> Any:
    if hasattr(obj, "item") and getattr(obj, "numel", lambda: 1)() == 1:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def with_digest(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with its digest set (computed over the JSON it will be written as)."""
    plain = json.loads(json.dumps(result, default=_plain, allow_nan=False))
    plain[DIGEST_KEY] = result_digest(plain)
    return plain


def digest_matches(result: dict[str, Any]) -> bool | None:
    """True/False when ``result`` carries a digest, None when it predates digests."""
    if DIGEST_KEY not in result:
        return None
    return result[DIGEST_KEY] == result_digest(result)
