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
from kabuguard.engine.store import Store

KeyOf = Callable[[Any], str | None]
Hook = Callable[[Any, dict[str, Any], Evidence], None]


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

    def run(self, event: Any, ev: Evidence, store: Store) -> dict[str, Any] | None:
        """Score then learn `event`; returns the key's state (None when the stage skips it)."""
        detectors = self.by_kind.get(event.kind)
        if detectors is None:
            return None
        key = self.key_of(event)
        if not key:
            return None
        state = store.get(self.name, key)
        fresh = state is None
        if fresh:
            state = {}
        slots = [state.get(d.name) or state.setdefault(d.name, d.initial()) for d in detectors]
        for detector, slot in zip(detectors, slots):
            detector.score(event, slot, ev)
        if self.between is not None:
            self.between(event, state, ev)
        for detector, slot in zip(detectors, slots):
            detector.learn(event, slot, ev)
        if fresh or not store.live:
            store.put(self.name, key, state)
        return state
