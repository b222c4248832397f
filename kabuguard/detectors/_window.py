"""Distinct keys seen within a sliding time window: the shared shape of "how many accounts"."""

from __future__ import annotations


def prune(last_seen: dict[str, int], cutoff: int) -> dict[str, int]:
    """Keep entries seen after `cutoff`; returns the same dict when nothing expired."""
    if all(t > cutoff for t in last_seen.values()):
        return last_seen
    return {k: t for k, t in last_seen.items() if t > cutoff}


def others(last_seen: dict[str, int], cutoff: int, me: str) -> int:
    """How many keys other than `me` were seen after `cutoff`."""
    return sum(1 for k, t in last_seen.items() if t > cutoff and k != me)
