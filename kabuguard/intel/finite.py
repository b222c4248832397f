"""Shared objects hold finite numbers only.

Python's `json` reads `NaN`, `Infinity` and `1e400` (as infinity), which JSON does not allow:
stored, such a number makes every page that serves the object invalid JSON and every sum it
reaches NaN, and Starlette refuses to encode the answer (a 500 for every reader).
"""

from __future__ import annotations

import math
from typing import Any


def non_finite(value: Any, path: str = "") -> str | None:
    """Where the first NaN or infinite number of decoded JSON is (`path.key[2]`), or None.

    A stack, not recursion: `json.loads` nests as deep as the recursion limit allows."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where or "the value"
        if isinstance(item, dict):
            stack.extend((f"{where}.{key}" if where else str(key), v) for key, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{where}[{n}]", v) for n, v in reversed(list(enumerate(item))))
    return None
