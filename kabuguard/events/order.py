"""One total order over events: the instant of `ts`, then input order; duplicates dropped."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kabuguard.events.model import Event


@dataclass(slots=True)
class Ordered:
    """Events in the total order, and how many duplicates of an `event_id` were dropped."""

    events: list[Event] = field(default_factory=list)
    duplicates: int = 0


def total_order(events: Iterable[Event]) -> Ordered:
    """Stable sort by instant (input order breaks ties); the first of each `event_id` wins."""
    ordered = sorted(events, key=_instant)
    seen: set[str] = set()
    kept: list[Event] = []
    for event in ordered:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        kept.append(event)
    return Ordered(kept, len(ordered) - len(kept))


def _instant(event: Event) -> int:
    return event.ts_us
