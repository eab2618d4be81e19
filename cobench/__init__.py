"""cobench: a benchmark suite for catastrophic overfitting in fast adversarial training.

Plugin authors need only ``from cobench import hookimpl`` and the base classes in
:mod:`cobench.api`.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Decorator for plugin hook implementations (``@hookimpl def register_methods(register): ...``).
hookimpl = pluggy.HookimplMarker("cobench")

__all__ = ["hookimpl", "__version__"]
