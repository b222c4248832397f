"""Sliding time windows over keys: the shared shape of "how many accounts", and windows kept
oldest first, whose expiry walks only the expired head however many entries they hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

V = TypeVar("V")


def prune(last_seen: dict[str, int], cutoff: int) -> dict[str, int]:
    """Keep entries seen after `cutoff`; returns the same dict when nothing expired."""
    # min() runs in C: the common case (nothing expired) costs no Python-level loop.
    if not last_seen or min(last_seen.values()) > cutoff:
        return last_seen
    return {k: t for k, t in last_seen.items() if t > cutoff}


def others(last_seen: dict[str, int], cutoff: int, me: str) -> int:
    """How many keys other than `me` were seen after `cutoff`."""
    if not last_seen:
        return 0
    if min(last_seen.values()) > cutoff:
        count = len(last_seen)
    else:
        count = sum(1 for t in last_seen.values() if t > cutoff)
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
