"""The keyed stages of the detection core.

Each stage owns the detectors of its name and keeps their state per key in a `Store`. For one
event a stage loads the key's state, lets every detector score (reading only state from strictly
earlier events), then lets every detector learn, and saves the state. Stages run in order
(account, ip, device, intel, market, symbol, final); a stage reads only earlier stages' evidence.

A stage whose detectors all remember a key only for a while (`WindowedDetector`, the IP and
device stages) forgets a key whose state holds nothing later than the longest of their horizons
ago: it would score as a new key would. Against the in-memory store the stage sweeps its keys
every half of that horizon (of event time); a Redis store lets a key expire a horizon and a
day after its last write (`horizons_us`, `RedisState`).

Market bars come a whole market per minute, and their detectors (`batch_types`) take a batch
of them at once (`run_batch`): consecutive bars of one minute and distinct symbols, which never
read each other's state, so the batch decides exactly as one bar at a time would. One bar is a
batch of one.
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
# A batch detector's state name, its fresh state and its bound `run_batch`.
BatchStep = tuple[str, Callable[[], Any], Callable[..., None]]


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
        batch = {kind for kind, ds in by_kind.items() if ds and all(kind in getattr(d, "batch_types", ()) for d in ds)}
        for kind, ds in by_kind.items():
            if kind not in batch and any(kind in getattr(d, "batch_types", ()) for d in ds):
                raise ValueError(f"stage {name}: `{kind}` has detectors with and without a batch path")
        self._steps: dict[str, tuple[Step, ...]] = {
            kind: tuple((d.name, d.initial, d.score, d.learn) for d in ds) for kind, ds in by_kind.items()
            if kind not in batch
        }
        self._batch: dict[str, tuple[BatchStep, ...]] = {
            kind: tuple((d.name, d.initial, d.run_batch) for d in by_kind[kind]) for kind in batch
        }
        # The in-memory store last run against and this stage's dict in it: one dict lookup per
        # event instead of a call into the store (the replay's hot path).
        self._memory: MemoryStore | None = None
        self._table: dict[str, dict[str, Any]] = {}
        horizons = [getattr(d, "horizon_us", None) for d in detectors]
        self.horizon_us: int | None = max(horizons) if horizons and None not in horizons and between is None else None
        # Per detector, its state's name and the latest time it remembers (`latest_us`), and
        # the event time of the next sweep of the memory store's keys.
        self._latest = tuple((d.name, d.latest_us) for d in detectors) if self.horizon_us is not None else ()
        self._sweep_at = 0

    def run(self, event: Any, ev: Evidence, store: Store) -> dict[str, Any] | None:
        """Score then learn `event`; returns the key's state (None when the stage skips it, or
        decides it as a batch of one)."""
        steps = self._steps.get(event.kind)
        if steps is None:
            if event.kind in self._batch:
                self.run_batch([event], [ev], store)
            return None
        key = self.key_of(event)
        if not key:
            return None
        if store is not self._memory and type(store) is MemoryStore:  # a subclass may override get
            self._memory, self._table, self._sweep_at = store, store.table(self.name), 0
        if store is self._memory:
            if self.horizon_us is not None and event.ts_us >= self._sweep_at:
                self._sweep(event.ts_us)
            state = self._table.get(key)
        else:
            state = store.get(self.name, key)
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

    def _sweep(self, now: int) -> None:
        """Drops the memory store's keys whose state holds nothing later than a horizon before
        `now`: the key scores as a new one would. A key goes at most half a horizon late, so
        the stage holds the keys of a horizon and a half at most; each sweep reads every key
        once (about 1 µs a key; sweeping every eighth of a horizon cost 3% of deciding a
        20-day replay)."""
        horizon = self.horizon_us
        assert horizon is not None
        cutoff = now - horizon
        table = self._table
        stale = [key for key, state in table.items()
                 if all(latest(state[name]) < cutoff for name, latest in self._latest if name in state)]
        for key in stale:
            del table[key]
        self._sweep_at = now + max(1, horizon // 2)

    def run_batch(self, events: Sequence[Any], evs: Sequence[Evidence], store: Store) -> None:
        """Score then learn a batch of one kind (see the module's docstring): each batch
        detector over all of it, then the `between` hook per event."""
        steps = self._batch.get(events[0].kind)
        if steps is None:  # a kind without a batch path here: one event at a time
            for event, ev in zip(events, evs):
                self.run(event, ev, store)
            return
        key_of = self.key_of
        keys = [key_of(event) for event in events]
        if not all(keys):
            kept = [i for i, key in enumerate(keys) if key]
            if not kept:
                return
            events, evs, keys = [events[i] for i in kept], [evs[i] for i in kept], [keys[i] for i in kept]
        states: dict[str, Any] = dict.fromkeys(keys)  # one per key (the market stage has one)
        for key in states:
            state = store.get(self.name, key)
            if state is None:
                state = {}
                store.put(self.name, key, state)
            states[key] = state
        for name, initial, run_batch in steps:
            for state in states.values():
                if name not in state:
                    state[name] = initial()
            run_batch(events, [states[key][name] for key in keys], evs, store)
        if self.between is not None:
            between = self.between
            for event, key, ev in zip(events, keys, evs):
                between(event, states[key], ev)
        if not store.live:
            for key, state in states.items():
                store.put(self.name, key, state)
