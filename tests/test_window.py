"""Sliding windows kept oldest first answer as a scan of every entry would, in any arrival order."""

from __future__ import annotations

import random

from kabuguard.detectors._window import others, prune, stamp


def test_windows_count_and_expire_as_a_full_scan_even_out_of_order() -> None:
    rng = random.Random(7)
    window = 50
    for trial in range(200):
        fast: dict[str, int] = {}
        seen: dict[str, int] = {}  # every key's latest time, scanned in full
        now = 0
        for _ in range(60):
            # Mostly in time order; now and then an event up to 30 ticks late.
            now += rng.randrange(0, 8)
            at = now - rng.randrange(0, 30) if rng.random() < 0.2 else now
            key, me = f"a{rng.randrange(12)}", f"a{rng.randrange(12)}"
            cutoff = at - window
            live = {k for k, t in seen.items() if t > cutoff}
            assert others(fast, cutoff, me) == len(live - {me}), trial
            prune(fast, cutoff)
            seen = {k: t for k, t in seen.items() if t > cutoff}
            assert fast == seen, trial
            stamp(fast, key, at)
            seen[key] = max(at, seen.get(key, at))
            assert list(fast.values()) == sorted(fast.values()), trial


def test_a_late_event_leaves_a_key_at_its_latest_time() -> None:
    """The service decides in arrival order: a key's late event stored its earlier time, so the
    key left windows early (a hosting address's operator no longer counted)."""
    window: dict[str, int] = {}
    for key, at in (("A", 100), ("B", 110), ("A", 50)):
        stamp(window, key, at)
    assert window == {"A": 100, "B": 110} and others(window, 60, "Z") == 2
