"""Where stage state lives: a small interface keyed by (stage, key).

The in-memory store is the embedded default and the replay's; the service keeps the same
states in Redis, and Spark holds them per partition. Stores hold state, never logic.

Besides a dict of detector states per key, a store keeps *rows*: a fixed number of floats per
key, for detectors that decide many keys at once in compiled code (market bars). The memory
store keeps a stage's rows in one table, so a batch reads and writes them in place; other
stores build a table for the keys asked and write the rows back per key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

Rows = tuple[np.ndarray, np.ndarray]  # a float64 table, and the row of each key asked for in it


class Store(Protocol):
    # True when `get` hands out the stored objects themselves, so changes need no `put`.
    live: bool

    def get(self, stage: str, key: str) -> dict[str, Any] | None:
        """The state of `key` in `stage`: detector name -> state, or None if never seen."""
        ...

    def put(self, stage: str, key: str, state: dict[str, Any]) -> None:
        """Save the state after an event changed it."""
        ...

    def rows(self, stage: str, keys: Sequence[str], fresh: np.ndarray) -> Rows:
        """The rows of `keys` in `stage`, a copy of `fresh` for a key never seen; the caller
        changes them in the table in place, then calls `put_rows`."""
        ...

    def put_rows(self, stage: str, keys: Sequence[str], rows: Rows) -> None:
        """Save the rows of `keys` after a batch changed them."""
        ...


class RowTable:
    """Rows of one stage by key, in one growing float64 table."""

    def __init__(self, stage: str, fresh: np.ndarray) -> None:
        self.stage = stage
        self.fresh = fresh
        self.data = np.empty((64, fresh.size))
        self.at: dict[str, int] = {}

    def rows(self, keys: Sequence[str], fresh: np.ndarray) -> Rows:
        if fresh.size != self.fresh.size:  # compiled code does not check bounds: refuse here
            raise ValueError(f"rows of `{self.stage}` hold {self.fresh.size} values, asked for {fresh.size}: two "
                             f"policies with different parameters share one store")
        at = self.at
        found = [at.get(key, -1) for key in keys]
        if -1 in found:
            for i, key in enumerate(keys):
                if found[i] < 0:
                    row = at.get(key)  # the same new key may come twice
                    found[i] = at[key] = self._add() if row is None else row
        return self.data, np.array(found, dtype=np.int64)

    def _add(self) -> int:
        n = len(self.at)
        if n == len(self.data):  # doubling: each row is copied about once on the way
            grown = np.empty((2 * n, self.fresh.size))
            grown[:n] = self.data
            self.data = grown
        self.data[n] = self.fresh
        return n


class MemoryStore:
    """Plain dictionaries handing out live objects, and one row table per stage."""

    live = True

    def __init__(self) -> None:
        self._stages: defaultdict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._rows: dict[str, RowTable] = {}

    def get(self, stage: str, key: str) -> dict[str, Any] | None:
        return self._stages[stage].get(key)

    def put(self, stage: str, key: str, state: dict[str, Any]) -> None:
        self._stages[stage][key] = state

    def rows(self, stage: str, keys: Sequence[str], fresh: np.ndarray) -> Rows:
        table = self._rows.get(stage)
        if table is None:
            table = self._rows[stage] = RowTable(stage, fresh)
        return table.rows(keys, fresh)

    def put_rows(self, stage: str, keys: Sequence[str], rows: Rows) -> None:
        """Nothing to do: the batch changed the table itself."""

    def table(self, stage: str) -> dict[str, dict[str, Any]]:
        """A stage's states by key, the live dict itself: a stage reads and adds keys there directly."""
        return self._stages[stage]

    def keys(self, stage: str) -> int:
        return len(self._stages.get(stage, {}))
