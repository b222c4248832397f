"""The market factor: how the whole market moved and how busy it was, minute by minute.

A rising index lifts every symbol and a busy day raises every symbol's volume; market
surveillance must judge a symbol net of both, or one market-wide move looks like thirty pumps.
This is the one piece of cross-symbol state, so it is its own stage with one key (`MARKET_KEY`),
run before the symbol stage: the replay, the service (one Redis key) and Spark (one partition)
then keep it like any other state, and the symbol stage can split by symbol. What it remembers
of each symbol (its last bar, its usual pace) is a row keyed by the symbol (`market_marks`), so
the service loads only the symbols a request carries.

Per minute, from every bar: the median one-minute log return (summed into an `index`) and the
median volume surprise, each symbol's log pace against its own running mean, net of the market's
own time-of-day profile (the opening auction is busy every day). A bar reads the tape only for
minutes **strictly before** its own (`ev.market`), so bars of the same minute never see each
other, whatever their input order. Minutes with fewer than `market_min_symbols` bars say nothing.

    >>> from kabuguard.engine import Pipeline
    >>> from kabuguard.events.reader import event_from_dict
    >>> pipeline = Pipeline()
    >>> def bar(symbol, minute, close):
    ...     return event_from_dict({"event_id": f"{symbol}{minute}", "type": "market_bar", "symbol": symbol,
    ...         "ts": f"2025-03-03T10:{minute:02d}:00.000+09:00", "open": close, "high": close,
    ...         "low": close, "close": close, "volume": 1000})
    >>> for minute, close in ((1, 100.0), (2, 101.0), (3, 101.0)):  # 20 symbols, all +1% at 10:02
    ...     evs = [Evidence() for _ in range(20)]
    ...     bars = [bar(f"S{i}", minute, close) for i in range(20)]
    ...     pipeline.market.run_batch(bars, evs, pipeline.store)
    >>> round(evs[0].market[0], 4)  # the 10:03 bars see the market's +1% of 10:02
    0.01
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
import numpy as np

from kabuguard.detectors.base import Evidence, bar_columns, compiled, count, number, positive

if TYPE_CHECKING:
    from kabuguard.engine.store import Store

MARKET_KEY = "all"
_MIN_US = 60_000_000
_DAY_MIN = 1440
_CLIP = 3.0  # a symbol's running mean learns from log-pace deviations clipped to this
# A symbol's row (`Store.rows`): its last bar, its usual log pace, and how many bars it learned.
_LAST_US, _LAST_CLOSE, _PACE, _N = range(4)


class MarketTape(msgspec.Struct, gc=False):
    minute: int = -1  # the minute being collected
    returns: list[float] = []
    surprises: list[float] = []
    index: float = 0.0  # cumulative median log return over finished minutes
    surprise: float = 0.0  # median volume surprise of the last finished minute, net of its time of day
    profile: list[float] = []  # the market's median surprise per time-of-day bucket


class MarketFactor:
    name: ClassVar[str] = "market_factor"
    stage: ClassVar[str] = "market"
    types: ClassVar[frozenset[str]] = frozenset({"market_bar"})
    batch_types: ClassVar[frozenset[str]] = types
    row_stage: ClassVar[str] = "market_marks"  # per symbol, beside the market's one key

    def __init__(self, params: dict[str, Any]) -> None:
        self.min_symbols = count(params, "market_min_symbols", self.name)  # the median of none is no move
        self.warmup = count(params, "warmup_bars", self.name, minimum=0)
        self.bucket_minutes = max(1, int(positive(params, "bucket_minutes", self.name)))
        self.profile_rate = number(params, "profile_rate", self.name)
        self.fresh_row = np.zeros(4)  # a symbol never seen: n = 0
        self._k = np.array([positive(params, "pace_horizon_minutes", self.name),
                            1.0 / positive(params, "baseline_minutes", self.name), self.warmup])

    def initial(self) -> MarketTape:
        return MarketTape(profile=[0.0] * -(-_DAY_MIN // self.bucket_minutes))

    def run_batch(self, events: Sequence[Any], tapes: Sequence[MarketTape], evs: Sequence[Evidence],
                  store: Store) -> None:
        """Bars of one minute, of distinct symbols: each reads the market as of the minutes
        before its own (`ev.market`: index, surprise), then adds its return and surprise."""
        tape = tapes[0]
        minute = (events[0].ts_us - 1) // _MIN_US
        if minute > tape.minute:
            self._roll(tape, minute)
        market = (tape.index, tape.surprise)
        for ev in evs:
            ev.market = market
        symbols = [e.symbol for e in events]
        rows = store.rows(self.row_stage, symbols, self.fresh_row)
        n = len(events)
        returns, surprises = np.empty(n), np.empty(n)
        got_r, got_s = compiled(_learn)(rows[0], rows[1], *bar_columns(events), self._k, returns, surprises)
        tape.returns += returns[:got_r].tolist()
        tape.surprises += surprises[:got_s].tolist()
        store.put_rows(self.row_stage, symbols, rows)

    def _roll(self, tape: MarketTape, minute: int) -> None:
        """Close the tape's minute (its medians) and start collecting `minute`."""
        surprise = 0.0
        if tape.minute >= 0:
            if len(tape.returns) >= self.min_symbols:
                tape.index += _median(tape.returns)
            if len(tape.surprises) >= self.min_symbols:
                bucket = tape.minute % _DAY_MIN // self.bucket_minutes
                surprise = _median(tape.surprises) - tape.profile[bucket]
                tape.profile[bucket] += self.profile_rate * surprise
        tape.surprise = surprise
        tape.minute = minute
        tape.returns = []
        tape.surprises = []


def _median(values: list[float]) -> float:
    """The median, the two middle values averaged for an even count: the upper one alone would
    lift the cumulative index a little every minute of a flat market."""
    values.sort()
    half = len(values) // 2
    return values[half] if len(values) % 2 else 0.5 * (values[half - 1] + values[half])


def _learn(table: np.ndarray, at: np.ndarray, now_us: np.ndarray, close: np.ndarray, volume: np.ndarray,
           k: np.ndarray, returns: np.ndarray, surprises: np.ndarray) -> tuple[int, int]:
    """Each bar's one-minute log return (after a bar a minute before) and its log-pace surprise
    (once warm) into `returns` and `surprises`; returns how many of each. Compiled: the market
    sees every bar."""
    horizon, inv_baseline, warmup = k[0], k[1], k[2]
    got_r = got_s = 0
    for i in range(at.size):
        if volume[i] <= 0 or close[i] <= 0:
            continue
        r, now = at[i], now_us[i]
        n = table[r, _N]
        if n == 0.0:
            table[r, _LAST_US], table[r, _LAST_CLOSE] = now, close[i]
            table[r, _PACE], table[r, _N] = math.log(volume[i] / horizon), 1.0
            continue
        gap = (now - table[r, _LAST_US]) / _MIN_US
        if gap <= 1.0:
            ratio = close[i] / table[r, _LAST_CLOSE]
            if 0.0 < ratio < math.inf:  # past the range of floats, no measurable move
                returns[got_r] = math.log(ratio)
                got_r += 1
            gap = 1.0
        raw = math.log(volume[i] / (gap if gap < horizon else horizon)) - table[r, _PACE]
        if n >= warmup:
            surprises[got_s] = raw
            got_s += 1
        rate = gap * inv_baseline
        fast = 1.0 / (n + 1.0)
        if rate < fast:
            rate = fast
        elif rate > 1.0:
            rate = 1.0
        table[r, _PACE] += rate * (_CLIP if raw > _CLIP else (-_CLIP if raw < -_CLIP else raw))
        table[r, _LAST_US], table[r, _LAST_CLOSE], table[r, _N] = now, close[i], n + 1.0
    return got_r, got_s
