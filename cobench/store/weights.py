"""A cell's final weights as a safetensors file beside its result (``--save-models``).

safetensors holds tensors and nothing else: loading one runs no code, unlike a pickled
``torch.save`` checkpoint, so a leaderboard can re-evaluate a stranger's weights safely.
The result records the file's SHA-256, and loading checks it first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from cobench.errors import CobenchError

#: where a result's weights go: the result's file name with this suffix
WEIGHTS_SUFFIX = ".safetensors"


def weights_bytes(model: nn.Module) -> bytes:
    """The model's state dict (parameters and buffers, on the CPU) as safetensors bytes."""
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()})


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights_path(result_path: Path) -> Path:
    return result_path.with_suffix(WEIGHTS_SUFFIX)


def weights_record(result_path: Path, data: bytes) -> dict[str, Any]:
    """The result's ``weights`` entry: file name (relative to the result file) and SHA-256."""
    return {"file": weights_path(result_path).name, "sha256": sha256_hex(data)}


def load_weights(model: nn.Module, result_path: Path, record: dict[str, Any]) -> None:
    """Load the weights ``record`` names into ``model``, after checking their SHA-256."""
    from safetensors.torch import load

    path = Path(result_path).parent / record["file"]
    if Path(record["file"]).name != record["file"]:
        raise CobenchError(f"result file {str(result_path)!r}: weights file {record['file']!r} must sit beside it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CobenchError(
            f"weights of {str(result_path)!r} cannot be read from {str(path)!r}: {exc.strerror or exc}"
        ) from None
    if sha256_hex(data) != record["sha256"]:
        raise CobenchError(
            f"weights file {str(path)!r} does not have the SHA-256 its result records "
            f"({record['sha256'][:16]}...): it is not the model that produced the result"
        )
    try:
        state = load(data)
        model.load_state_dict({k: v.to(next(model.parameters()).device) for k, v in state.items()}, strict=True)
    except Exception as exc:
        raise CobenchError(
            f"weights file {str(path)!r} does not fit the result's model: {type(exc).__name__}: {exc}"
        ) from None
