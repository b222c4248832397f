"""A fixed CPU yardstick, printed beside the benchmarks' figures.

The development machines differ in single-thread speed from one session to the next by up to
about 2x: the same code gave 469k, 288k and 241k bars/s in three sessions. A throughput figure
compares across machines only next to a measure of the machine, so the core benchmarks also
print this one: the kind of pure-Python work their hot paths do (dict look-ups, attribute reads
and writes, float maths, string splits), a fixed amount of it, in loops per CPU microsecond,
best of five. Divide a figure by it to compare runs taken on different days.

Run alone: .venv/bin/python bench/machine.py
"""

from __future__ import annotations

import math
import time

_LOOPS = 200_000


class _Tape:
    __slots__ = ("mu", "n")

    def __init__(self) -> None:
        self.mu, self.n = 0.0, 0


def _work(loops: int) -> float:
    states = {f"k{i}": _Tape() for i in range(512)}
    keys = list(states)
    host, log, total = "www.example-login.co.jp", math.log, 0.0
    for i in range(loops):
        state = states.get(keys[i & 511])
        x = log(1.0 + (i & 1023))
        state.mu += 0.01 * (x - state.mu)
        state.n += 1
        total += len(host.split(".")[1])
    return total


def reference(repeat: int = 5) -> float:
    """Loops of `_work` per CPU microsecond on this machine, best of `repeat`."""
    best = math.inf
    for _ in range(repeat):
        start = time.process_time()
        _work(_LOOPS)
        best = min(best, time.process_time() - start)
    return _LOOPS / best / 1e6


def line() -> str:
    """The line a benchmark prints under its figures."""
    return f"machine yardstick: {reference():.2f} loops per CPU µs (bench/machine.py; divide figures by it to compare machines)"


if __name__ == "__main__":
    print(line())
