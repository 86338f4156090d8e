"""The optional extras: importing a package that one of them installs, or saying which.

`pip install 'livestate[schema]'` (msgspec), `[pyview]`, `[metrics]`
(prometheus-client) and `[redis]` (redis-py, hiredis) add what a part needs; the
part imports it through `require`, so that a missing one says how to install it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["require"]


def require(module: str, user: str, extra: str) -> Any:
    """Import `module`, or raise an ImportError saying that `user` needs it and that
    `pip install 'livestate[extra]'` installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{user} needs {module}, which is not installed; install it with "
            f"pip install 'livestate[{extra}]'."
        ) from error
