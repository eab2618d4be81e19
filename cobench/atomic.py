"""The one way cobench writes a file: results, rendered leaderboards, weights, checkpoints and
decompressed data all go through :func:`write_atomic`, so a reader (or a crash) sees the old
file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: what to write: text (UTF-8), bytes, or a function that writes to the open binary file
Contents = str | bytes | Callable[[BinaryIO], None]


def write_atomic(path: Path, contents: Contents) -> None:
    """Write ``contents`` to a temporary file beside ``path``, flush it to disk, then rename.

    The file gets the usual permissions (0666 less the umask), not ``mkstemp``'s 0600:
    results and rendered leaderboards are meant to be shared.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(contents):
                contents(f)
            else:
                f.write(contents.encode() if isinstance(contents, str) else contents)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
