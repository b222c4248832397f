"""The embedded state: the same interface as `RedisState`, in this process's memory.

States are kept as the same msgpack bytes Redis would hold, so the embedded service runs the
exact code path of production (and its equivalence test covers the codec). It lives only as
long as the process: at start the service rebuilds it from the database's event log.
"""

from __future__ import annotations

from collections.abc import Sequence

from kabuguard.engine.redis_store import Snapshot, StageKey


class MemoryState:
    # Built by this process from its own log: never of another version's format.
    format_error: str | None = None

    def __init__(self) -> None:
        self._states: dict[tuple[str, str, str], bytes] = {}
        self._seen: dict[tuple[str, str], bytes] = {}

    async def load(self, firm: str, keys: Sequence[StageKey], event_ids: Sequence[str]) -> Snapshot:
        return self.load_now(firm, keys, event_ids)

    def load_now(self, firm: str, keys: Sequence[StageKey], event_ids: Sequence[str]) -> Snapshot:
        states, seen = self._states, self._seen
        raw = {sk: states.get((firm, *sk)) for sk in keys}
        found = {e: r for e in event_ids if (r := seen.get((firm, e))) is not None}
        return Snapshot(raw, dict.fromkeys(keys, "0"), found)

    def apply(self, firm: str, writes: dict[StageKey, bytes], results: dict[str, bytes]) -> None:
        for (stage, key), data in writes.items():
            self._states[(firm, stage, key)] = data
        for event_id, record in results.items():
            self._seen[(firm, event_id)] = record

    def get(self, firm: str, stage: str, key: str) -> bytes | None:
        return self._states.get((firm, stage, key))

    async def ping(self) -> bool:
        return True
