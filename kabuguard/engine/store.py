"""Where stage state lives: a small interface keyed by (stage, key).

The in-memory store is the embedded default and the replay's; the service keeps the same
states in Redis, and Spark holds them per partition. Stores hold state, never logic.
"""

from __future__ import annotations

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
        self._stages: dict[str, dict[str, dict[str, Any]]] = {}

    def get(self, stage: str, key: str) -> dict[str, Any] | None:
        states = self._stages.get(stage)
        return states.get(key) if states is not None else None

    def put(self, stage: str, key: str, state: dict[str, Any]) -> None:
        self._stages.setdefault(stage, {})[key] = state

    def keys(self, stage: str) -> int:
        return len(self._stages.get(stage, {}))
