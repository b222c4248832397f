"""Sliding time windows over keys: the shared shape of "how many accounts", and windows kept
oldest first, whose expiry walks only the expired head however many entries they hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

V = TypeVar("V")


def stamp(last_seen: dict[str, int], key: str, at: int) -> None:
    """Records `key` as seen at `at`, keeping `last_seen` oldest first (`prune`, `others`).

    Streams come in time order, so the key normally goes last; an event older than the newest
    entry (a client sending slightly out of order) is placed before the later entries, and one
    older than the key's own last time leaves it there: a key is seen until its latest event."""
    if last_seen.get(key, at) > at:
        return
    last_seen.pop(key, None)
    if last_seen and at < last_seen[next(reversed(last_seen))]:
        later = []
        for other in reversed(last_seen):
            if last_seen[other] <= at:
                break
            later.append(other)
        moved = [(other, last_seen.pop(other)) for other in later]
        last_seen[key] = at
        last_seen.update(reversed(moved))
        return
    last_seen[key] = at


def stamp_capped(last_seen: dict[str, int], key: str, at: int, cap: int) -> None:
    """`stamp`, then the oldest entries dropped beyond `cap`: a window that only has to say "at
    least this many" (a carrier's address serving thousands) stays small in state."""
    stamp(last_seen, key, at)
    while len(last_seen) > cap:
        del last_seen[next(iter(last_seen))]


def _expired(last_seen: dict[str, int], cutoff: int) -> int:
    """How many entries, at the head of a window kept oldest first, were seen at or before `cutoff`."""
    n = 0
    for t in last_seen.values():
        if t > cutoff:
            break
        n += 1
    return n


def prune(last_seen: dict[str, int], cutoff: int) -> dict[str, int]:
    """Drops the entries seen at or before `cutoff` from a window kept oldest first (`stamp`),
    walking only the expired head (`drop_expired`); returns the same dict."""
    drop_expired(last_seen, cutoff, int)
    return last_seen


def others(last_seen: dict[str, int], cutoff: int, me: str) -> int:
    """How many keys other than `me` were seen after `cutoff`, in a window kept oldest first."""
    count = len(last_seen) - _expired(last_seen, cutoff)
    mine = last_seen.get(me)
    return count - 1 if mine is not None and mine > cutoff else count


def renew(entries: dict[str, V], key: str, value: V) -> V | None:
    """Puts `key` last, as the newest entry, so that a dict filled in time order stays oldest
    first; returns the value it replaced."""
    previous = entries.pop(key, None)
    entries[key] = value
    return previous


def drop_expired(entries: dict[str, V], cutoff: int, at: Callable[[V], int]) -> list[V]:
    """Drops the entries, kept oldest first (`renew`), whose time `at(value)` is at or before
    `cutoff`, walking only the expired head; returns the dropped values."""
    dropped = []
    while entries:
        oldest = next(iter(entries))
        value = entries[oldest]
        if at(value) > cutoff:
            break
        del entries[oldest]
        dropped.append(value)
    return dropped
