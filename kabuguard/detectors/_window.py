"""Distinct keys seen within a sliding time window: the shared shape of "how many accounts"."""

from __future__ import annotations


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
