"""A symbol's liquidity from the market's own bars, where its reference data gives none.

The thin-stock tests read a symbol's average daily volume (`adv_shares` of its `instrument`
record). An export may send no instrument records, or records without an ADV (a coin, a
foreign listing), and every one of those tests is then blind: `thin_stock_buy` is silent, and
`campaign` and `suspect_flow` take every stock, the largest included, as possibly thin. The
symbol stage sees every bar of the market, so per symbol it sums each UTC day's volume
(`TradedDays`, kept in the symbol stage's state and updated by every bar) and an order whose
record has no ADV reads, as reference data of its symbol from strictly earlier events, the mean
daily volume of the trading days before the order's own (up to `ADV_DAYS`, once there are
`MIN_DAYS` since the symbol's first bar) and the latest close. The order's own day never counts:
a pump's volume must not make its stock look liquid while it runs. A record's own ADV always wins.

A trading day without a bar of the symbol counts, as a day of no volume: the illiquid names a
pump picks go whole days without a trade, and counting only the days with one made a name that
trades one day in three look three times as busy as it is. Which days trade, the symbol's own
completed days tell: Monday to Friday (UTC) until it has traded on a Saturday and on a Sunday (a
coin), then every day. One weekend side alone is a session crossing midnight UTC (a US stock's
after-hours on Friday evening, an Australian Monday opening on Sunday), not a weekend market. A
stock exchange's holiday inside the window counts as a day of no volume, the cautious side: one
day in twenty makes the name look 5% thinner, the three or four around New Year or in Golden
Week 15-20%.

    >>> from kabuguard.events.reader import event_from_dict
    >>> days = TradedDays()
    >>> for day, volume in ((3, 1000), (4, 3000), (5, 500_000)):  # day 5: the pump's own
    ...     days.add(event_from_dict({"type": "market_bar", "event_id": f"b{day}", "symbol": "9999",
    ...         "ts": f"2025-03-0{day}T10:00:00+09:00", "open": 300.0, "high": 310.0, "low": 300.0,
    ...         "close": 300.0 + day, "volume": volume}))
    >>> days.liquidity(days.day * DAY_US + 1)  # an order on day 5 reads days 3 and 4
    (2000.0, 304.0)
    >>> days.liquidity((days.day + 5) * DAY_US + 1)  # on Monday the 10th: the 3rd to Friday the 7th
    (100800.0, 305.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from kabuguard.events.model import Instrument

DAY_US = 86_400_000_000
ADV_DAYS = 20  # the convention of an average daily volume
MIN_DAYS = 2
# The calendar days that ADV_DAYS weekdays span: no window reaches further back.
SPAN_DAYS = -(-ADV_DAYS // 5) * 7


def utc_day(ts_us: int) -> int:
    """The UTC day a time belongs to; a bar ending at midnight belongs to the day before."""
    return (ts_us - 1) // DAY_US


def lacks_liquidity(instrument: Instrument | None) -> bool:
    """Whether an order reading `instrument` needs the liquidity of the bars: no record, or one
    without its ADV or price."""
    return instrument is None or not instrument.adv_shares or not instrument.last_price


def _weekend(day: int) -> int:
    """For a UTC day (days since 1970-01-01, a Thursday): 1 on a Saturday, 2 on a Sunday, else 0."""
    return max(0, (day + 3) % 7 - 4)


_BOTH_WEEKEND_DAYS = 3


class TradedDays(msgspec.Struct, gc=False):
    """One symbol's volume per UTC day, from its bars: the day being summed and the completed
    ones with bars, the first day it traded and which weekend days it traded on."""

    day: int = -1  # the UTC day being summed (a bar ending at midnight belongs to the day before)
    volume: float = 0.0
    close: float = 0.0
    days: list[tuple[int, float, float]] = []  # completed days with bars within SPAN_DAYS: (day, volume, close)
    first: int = -1  # the first day with a bar
    weekends: int = 0  # completed days with volume on a Saturday (1) and on a Sunday (2): 3 trades every day

    def add(self, bar: Any) -> None:
        day = utc_day(bar.ts_us)
        if day > self.day:  # a late bar of an earlier day counts in the current one
            if self.day >= 0:
                self.days.append((self.day, self.volume, self.close))
                # By date, not by count: bars on days that are no trading days (a session crossing
                # midnight UTC) must not push trading days out of the window.
                while self.days[0][0] < day - SPAN_DAYS:
                    del self.days[0]
                if self.volume > 0:
                    self.weekends |= _weekend(self.day)
            else:
                self.first = day
            self.day, self.volume = day, 0.0
        self.volume += bar.volume
        self.close = bar.close

    def liquidity(self, ts_us: int) -> tuple[float, float] | None:
        """The mean daily volume over the trading days before `ts_us`'s day (at most `ADV_DAYS`,
        none before the first bar) and the last close before it; None before `MIN_DAYS` of them
        or when they traded nothing."""
        today = utc_day(ts_us)
        days, weekends = self.days, self.weekends
        if 0 <= self.day < today:  # the day being summed is complete for this order
            days = [*days, (self.day, self.volume, self.close)]
            if self.volume > 0:
                weekends |= _weekend(self.day)
        if not days:
            return None
        every_day = weekends == _BOTH_WEEKEND_DAYS
        counted, start = 0, today
        while counted < ADV_DAYS and start > self.first:  # walk back over the window's trading days
            start -= 1
            if every_day or not _weekend(start):
                counted += 1
        if counted < MIN_DAYS:
            return None
        volume = sum(v for day, v, _ in days if day >= start)
        return (volume / counted, days[-1][2]) if volume > 0 else None


def with_liquidity(instrument: Instrument | None, traded: tuple[float, float] | None, order: Any) -> Instrument | None:
    """`instrument` as an order reads it: its own ADV and price when it has them, else the ones the
    market's bars give (`TradedDays.liquidity`), keeping what else the record says."""
    if traded is None or not lacks_liquidity(instrument):
        return instrument
    adv, close = traded
    if instrument is None:
        return Instrument(event_id=f"traded-{order.symbol}", ts=order.ts, symbol=order.symbol,
                          adv_shares=adv, last_price=close)
    return msgspec.structs.replace(instrument, adv_shares=instrument.adv_shares or adv,
                                   last_price=instrument.last_price or close)


def liquidity_by_day(bars: Iterable[Any]) -> Iterator[tuple[int, tuple[float, float] | None]]:
    """For one symbol's bars in the total order: (first day, liquidity) for every span of days
    whose orders read the same liquidity (None: none, as after 20 trading days without volume),
    as `TradedDays` gives it to an order of that day. A runner that cannot keep `TradedDays`
    beside the orders (Spark's stages run one after another) looks an order's day up in these.
    Between two days with bars the window slides a day at a time, so each day is asked."""
    days, last = TradedDays(), None

    def spans(until: int) -> Iterator[tuple[int, tuple[float, float] | None]]:
        nonlocal last
        for day in range(days.day + 1, until + 1):
            found = days.liquidity(day * DAY_US + 1)
            if found != last:
                yield day, found
                last = found

    for bar in bars:
        day = utc_day(bar.ts_us)
        if day > days.day >= 0:
            yield from spans(day)
        days.add(bar)
    if days.day >= 0:  # the days after the last bar, until the window holds none of its volume
        yield from spans(days.day + 2 * ADV_DAYS + 1)
