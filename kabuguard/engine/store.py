"""Where stage state lives: a small interface keyed by (stage, key).

The in-memory store is the embedded default and the replay's; the service keeps the same
states in Redis, and Spark holds them per partition. Stores hold state, never logic.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol


class Store(Protocol):
    # True when `get` hands out the stored objects themselves, so changes need no `put`.
    live: bool

    def get(self, stage: str, key: str) -> dict[str, Any] | None:
        """The state of `key` in `stage`: detector name -> state, or None if never seen."""
        ...

    def put(self, stage: str, key: str, state: dict[str, Any]) -> None:
        """Save the state after an event changed it."""
        ...


class MemoryStore:
    """Plain dictionaries handing out live objects."""

    live = True

    def __init__(self) -> None:
        self._stages: defaultdict[str, dict[str, dict[str, Any]]] = defaultdict(dict)

    def get(self, stage: str, key: str) -> dict[str, Any] | None:
        return self._stages[stage].get(key)

    def put(self, stage: str, key: str, state: dict[str, Any]) -> None:
        self._stages[stage][key] = state

    def table(self, stage: str) -> dict[str, dict[str, Any]]:
        """A stage's states by key, the live dict itself: a stage reads and adds keys there directly."""
        return self._stages[stage]

    def keys(self, stage: str) -> int:
        return len(self._stages.get(stage, {}))
