"""The market factor: how the whole market moved and how busy it was, minute by minute.

A rising index lifts every symbol and a busy day raises every symbol's volume; market
surveillance must judge a symbol net of both, or one market-wide move looks like thirty pumps.
This is the one piece of cross-symbol state, so it is its own stage with one key (`MARKET_KEY`),
run before the symbol stage: the replay, the service (one Redis key) and Spark (one partition)
then keep it like any other state, and the symbol stage can split by symbol.

Per minute, from every bar: the median one-minute log return (summed into an `index`) and the
median volume surprise, each symbol's log pace against its own running mean, net of the market's
own time-of-day profile (the opening auction is busy every day). A bar reads the tape only for
minutes **strictly before** its own (`ev.market`), so bars of the same minute never see each
other, whatever their input order. Minutes with fewer than `market_min_symbols` bars say nothing.

    >>> from kabuguard.events.reader import event_from_dict
    >>> factor = MarketFactor({"market_min_symbols": 2, "baseline_minutes": 1500, "warmup_bars": 1,
    ...                        "bucket_minutes": 30, "pace_horizon_minutes": 5, "profile_rate": 0.02})
    >>> tape = factor.initial()
    >>> def bar(symbol, minute, close):
    ...     return event_from_dict({"event_id": f"{symbol}{minute}", "type": "market_bar", "symbol": symbol,
    ...         "ts": f"2025-03-03T10:{minute:02d}:00.000+09:00", "open": close, "high": close,
    ...         "low": close, "close": close, "volume": 1000})
    >>> for minute, close in ((1, 100.0), (2, 101.0), (3, 101.0)):  # two symbols, both +1% at 10:02
    ...     for symbol in ("A", "B"):
    ...         ev = Evidence()
    ...         factor.score(bar(symbol, minute, close), tape, ev)
    ...         factor.learn(bar(symbol, minute, close), tape, ev)
    >>> round(ev.market[0], 4)  # the 10:03 bar sees the market's +1% of 10:02
    0.01
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, param

MARKET_KEY = "all"
_MIN_US = 60_000_000
_DAY_MIN = 1440
_CLIP = 3.0  # a symbol's running mean learns from log-pace deviations clipped to this
_log = math.log


class SymbolMark(msgspec.Struct, array_like=True, gc=False):
    """What the market remembers of one symbol: its last bar and its usual log pace."""

    last_us: int
    last_close: float
    pace: float
    n: int


class MarketTape(msgspec.Struct, gc=False):
    minute: int = -1  # the minute being collected
    returns: list[float] = []
    surprises: list[float] = []
    index: float = 0.0  # cumulative median log return over finished minutes
    surprise: float = 0.0  # median volume surprise of the last finished minute, net of its time of day
    profile: list[float] = []  # the market's median surprise per time-of-day bucket
    symbols: dict[str, SymbolMark] = {}


class MarketFactor:
    name: ClassVar[str] = "market_factor"
    stage: ClassVar[str] = "market"
    types: ClassVar[frozenset[str]] = frozenset({"market_bar"})

    def __init__(self, params: dict[str, Any]) -> None:
        p = lambda key: float(param(params, key, self.name))  # noqa: E731
        self.min_symbols = int(p("market_min_symbols"))
        self.inv_baseline = 1.0 / p("baseline_minutes")
        self.warmup = int(p("warmup_bars"))
        self.bucket_minutes = int(p("bucket_minutes"))
        self.horizon = p("pace_horizon_minutes")
        self.profile_rate = p("profile_rate")

    def initial(self) -> MarketTape:
        return MarketTape(profile=[0.0] * -(-_DAY_MIN // self.bucket_minutes))

    def score(self, event: Any, tape: MarketTape, ev: Evidence) -> None:
        """The market as of the minute before the bar's own: `(index, surprise)`."""
        minute = (event.ts_us - 1) // _MIN_US
        if minute > tape.minute:
            self._roll(tape, minute)
        ev.market = (tape.index, tape.surprise)

    def learn(self, event: Any, tape: MarketTape, ev: Evidence) -> None:
        volume, close = event.volume, event.close
        if volume <= 0 or close <= 0:
            return
        now = event.ts_us
        mark = tape.symbols.get(event.symbol)
        if mark is None:
            tape.symbols[event.symbol] = SymbolMark(now, close, _log(volume / self.horizon), 1)
            return
        gap = (now - mark.last_us) / _MIN_US
        if gap <= 1.0:
            tape.returns.append(_log(close / mark.last_close))
            gap = 1.0
        horizon = self.horizon
        raw = _log(volume / (gap if gap < horizon else horizon)) - mark.pace
        n = mark.n
        if n >= self.warmup:
            tape.surprises.append(raw)
        rate = gap * self.inv_baseline
        fast = 1.0 / (n + 1.0)
        if rate < fast:
            rate = fast
        elif rate > 1.0:
            rate = 1.0
        mark.pace += rate * (_CLIP if raw > _CLIP else (-_CLIP if raw < -_CLIP else raw))
        mark.last_us, mark.last_close, mark.n = now, close, n + 1

    def _roll(self, tape: MarketTape, minute: int) -> None:
        """Close the tape's minute (its medians) and start collecting `minute`."""
        surprise = 0.0
        if tape.minute >= 0:
            if len(tape.returns) >= self.min_symbols:
                tape.returns.sort()
                tape.index += tape.returns[len(tape.returns) // 2]
            if len(tape.surprises) >= self.min_symbols:
                tape.surprises.sort()
                median = tape.surprises[len(tape.surprises) // 2]
                bucket = tape.minute % _DAY_MIN // self.bucket_minutes
                surprise = median - tape.profile[bucket]
                tape.profile[bucket] += self.profile_rate * surprise
        tape.surprise = surprise
        tape.minute = minute
        tape.returns = []
        tape.surprises = []
