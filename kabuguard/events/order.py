"""One total order over events: the instant of `ts`, then input order; duplicates dropped.

A stream too large to hold is sorted the way databases do it: sorted runs spilled to disk,
then merged. The replay's memory is then bounded by the run size and the set of event ids
seen, not by the length of the history.
"""

from __future__ import annotations

import heapq
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgspec

from kabuguard.events.model import Event, event_firm

# Events per chunk of a spilled run: large enough for msgspec to encode in bulk, small enough
# that merging many runs holds little of each.
_CHUNK = 10_000
_LENGTH = struct.Struct("<I")
# Events a replay sorts in memory before it sorts in runs on disk: about 0.9 KB each, ~2 GB.
SPILL_AFTER = 2_000_000


@dataclass(slots=True)
class Ordered:
    """Events in the total order, and how many duplicates of an event (its `firm` and `event_id`) were dropped."""

    events: list[Event] = field(default_factory=list)
    duplicates: int = 0


def total_order(events: Iterable[Event]) -> Ordered:
    """Stable sort by instant (input order breaks ties); the first of each event (its `firm` and
    `event_id`) wins."""
    order = TotalOrder()
    order.extend(events)
    return Ordered(list(order), order.duplicates)


class TotalOrder:
    """Collects events in input order and gives them back in the total order, once each.

    Past `spill_after` events held, the held events are sorted and written to a temporary run
    file (msgpack, in chunks); iteration merges the runs and what is still held. Ties keep input
    order across runs as within them (earlier runs hold earlier input), so the order, and the
    duplicate that wins, are the same as sorting everything in memory."""

    def __init__(self, spill_after: int | None = None, workdir: str | Path | None = None) -> None:
        if spill_after is not None and spill_after < 1:
            raise ValueError(f"spill_after must be at least 1, got {spill_after}")
        self.spill_after = spill_after
        self.workdir = workdir
        self.duplicates = 0
        self.added = 0
        self._held: list[Event] = []
        self._runs: list[BinaryIO] = []

    @property
    def runs(self) -> int:
        """Sorted runs written to disk so far."""
        return len(self._runs)

    def add(self, event: Event) -> None:
        self._held.append(event)
        self.added += 1
        if self.spill_after is not None and len(self._held) >= self.spill_after:
            self._spill()

    def extend(self, events: Iterable[Event]) -> None:
        for event in events:
            self.add(event)

    def __iter__(self) -> Iterator[Event]:
        held = sorted(self._held, key=_instant)
        self._held = []
        runs = [_read_run(run) for run in self._runs]
        merged = heapq.merge(*runs, held, key=_instant) if runs else iter(held)
        seen: set[str | tuple[str, str]] = set()
        for event in merged:
            # An event's identity is its id at its firm: a pooled feed's firms number theirs alike
            # (the market's data excepted: every firm's export may carry the same bars).
            firm = event_firm(event)
            key = event.event_id if firm is None else (firm, event.event_id)
            if key in seen:
                self.duplicates += 1
                continue
            seen.add(key)
            yield event

    def close(self) -> None:
        for run in self._runs:
            run.close()
        self._runs = []

    def __enter__(self) -> TotalOrder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spill(self) -> None:
        run = tempfile.TemporaryFile(prefix="kabuguard-run-", dir=self.workdir)
        held = sorted(self._held, key=_instant)
        self._held = []
        encode = msgspec.msgpack.Encoder().encode
        for start in range(0, len(held), _CHUNK):
            chunk = encode(held[start:start + _CHUNK])
            run.write(_LENGTH.pack(len(chunk)))
            run.write(chunk)
        run.seek(0)
        self._runs.append(run)


def _read_run(run: BinaryIO) -> Iterator[Event]:
    decode = msgspec.msgpack.Decoder(list[Event]).decode
    while head := run.read(_LENGTH.size):
        (size,) = _LENGTH.unpack(head)
        yield from decode(run.read(size))


def _instant(event: Event) -> int:
    return event.ts_us
