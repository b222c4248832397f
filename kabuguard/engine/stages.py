"""The keyed stages of the detection core.

Each stage owns the detectors of its name and keeps their state per key in a `Store`. For one
event a stage loads the key's state, lets every detector score (reading only state from strictly
earlier events), then lets every detector learn, and saves the state. Stages run in order
(account, ip, device, symbol, final); a stage reads only earlier stages' evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kabuguard.detectors.base import Detector, Evidence
from kabuguard.engine.store import MemoryStore, Store

KeyOf = Callable[[Any], str | None]
Hook = Callable[[Any, dict[str, Any], Evidence], None]
# What a stage runs for one event type, resolved once: per detector its state's name, its
# fresh state and its bound `score` and `learn` (the hot loop then does no attribute lookups).
Step = tuple[str, Callable[[], Any], Callable[..., None], Callable[..., None]]


class KeyedStage:
    """Detectors sharing one key, run over events in the total order."""

    def __init__(self, name: str, detectors: Sequence[Detector], key_of: KeyOf,
                 kinds: frozenset[str] = frozenset(), between: Hook | None = None) -> None:
        self.name = name
        self.key_of = key_of
        self.between = between
        by_kind: dict[str, list[Detector]] = {kind: [] for kind in kinds}
        for detector in detectors:
            for kind in detector.types:
                by_kind.setdefault(kind, []).append(detector)
        self.by_kind = by_kind
        self._steps: dict[str, tuple[Step, ...]] = {
            kind: tuple((d.name, d.initial, d.score, d.learn) for d in ds) for kind, ds in by_kind.items()
        }
        # The in-memory store last run against and this stage's dict in it: one dict lookup per
        # event instead of a call into the store (the replay's hot path).
        self._memory: MemoryStore | None = None
        self._table: dict[str, dict[str, Any]] = {}

    def run(self, event: Any, ev: Evidence, store: Store) -> dict[str, Any] | None:
        """Score then learn `event`; returns the key's state (None when the stage skips it)."""
        steps = self._steps.get(event.kind)
        if steps is None:
            return None
        key = self.key_of(event)
        if not key:
            return None
        if store is not self._memory and type(store) is MemoryStore:  # a subclass may override get
            self._memory, self._table = store, store.table(self.name)
        state = self._table.get(key) if store is self._memory else store.get(self.name, key)
        fresh = state is None
        if fresh:
            state = {}
        # Scoring reads only the detector's own state, so each state is created just before
        # its detector scores, in the same order as before.
        for name, initial, score, _ in steps:
            slot = state.get(name)
            if slot is None:
                slot = state[name] = initial()
            score(event, slot, ev)
        if self.between is not None:
            self.between(event, state, ev)
        # Learning reads each state back by name: cheaper than collecting the slots in a list.
        for name, _, _, learn in steps:
            learn(event, state[name], ev)
        if fresh or not store.live:
            store.put(self.name, key, state)
        return state
