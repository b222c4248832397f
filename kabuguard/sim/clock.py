"""Japanese market time: trading days, the TSE session minutes, and contract timestamps.

Everything inside the simulator counts time in milliseconds since the epoch (int), and renders
JST (+09:00) only when an event is written, so that sorting and arithmetic never touch strings.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np

JST = dt.timezone(dt.timedelta(hours=9))
MS_PER_MIN = 60_000
MS_PER_DAY = 86_400_000
_EPOCH = dt.date(1970, 1, 1)

# TSE holidays besides weekends (JPX calendar), 2025-2026.
HOLIDAYS = frozenset(
    dt.date.fromisoformat(d)
    for d in (
        "2025-01-01 2025-01-02 2025-01-03 2025-01-13 2025-02-11 2025-02-24 2025-03-20 "
        "2025-04-29 2025-05-05 2025-05-06 2025-07-21 2025-08-11 2025-09-15 2025-09-23 "
        "2025-10-13 2025-11-03 2025-11-24 2025-12-31 2026-01-01 2026-01-02 2026-01-12 "
        "2026-02-11 2026-02-23 2026-03-20 2026-04-29 2026-05-04 2026-05-05 2026-05-06 "
        "2026-07-20 2026-08-11 2026-09-21 2026-09-22 2026-09-23 2026-10-12 2026-11-03 "
        "2026-11-23 2026-12-31"
    ).split()
)

# One-minute bars: the morning session 09:00-11:30 (150 bars), the afternoon 12:30-15:30
# (180 bars). Since November 2024 continuous trading stops at 15:25 and the closing auction
# prints at 15:30, so minutes 15:25-15:29 only collect orders for the auction.
MORNING_BARS, AFTERNOON_BARS = 150, 180
BARS_PER_DAY = MORNING_BARS + AFTERNOON_BARS
AFTERNOON_OPEN = MORNING_BARS
PRE_CLOSE = BARS_PER_DAY - 5  # first minute of the closing-auction call (15:25)
CLOSING_AUCTION = BARS_PER_DAY - 1


def is_trading_day(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in HOLIDAYS


def day_start_ms(day: dt.date) -> int:
    """Midnight JST of `day`."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=JST).timestamp() * 1000)


def bar_start_ms(day: dt.date, minute: int) -> int:
    """Start of session minute `minute` (0..329) on `day`."""
    base = 9 * 60 if minute < MORNING_BARS else 12 * 60 + 30 - MORNING_BARS
    return day_start_ms(day) + (base + minute) * MS_PER_MIN


def session_minute(ms_of_day: int) -> int | None:
    """The session minute a time of day (ms after midnight) falls in, or None outside trading."""
    minute_of_day = ms_of_day // MS_PER_MIN
    if 9 * 60 <= minute_of_day < 11 * 60 + 30:
        return minute_of_day - 9 * 60
    if 12 * 60 + 30 <= minute_of_day < 15 * 60 + 30:
        return minute_of_day - (12 * 60 + 30) + MORNING_BARS
    return None


def jst_date(ms: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=(ms + 9 * 3_600_000) // MS_PER_DAY)


def jst_hour(ms: int) -> int:
    return (ms // 3_600_000 + 9) % 24


def iso(ms: int) -> str:
    """RFC 3339 with milliseconds and the +09:00 offset, e.g. 2025-03-21T09:14:03.120+09:00."""
    local = ms + 9 * 3_600_000
    day, in_day = divmod(local, MS_PER_DAY)
    seconds, millis = divmod(in_day, 1000)
    minutes, second = divmod(seconds, 60)
    return f"{_date_text(day)}T{minutes // 60:02d}:{minutes % 60:02d}:{second:02d}.{millis:03d}+09:00"


@functools.lru_cache(maxsize=4096)
def _date_text(days_since_epoch: int) -> str:
    return (_EPOCH + dt.timedelta(days=days_since_epoch)).isoformat()


def next_trading_day(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while not is_trading_day(day):
        day += dt.timedelta(days=1)
    return day


def fill_slot(ms: int) -> tuple[dt.date, int]:
    """The trading day and session minute in which an order sent at `ms` first trades.

    Orders sent before the open, over lunch or in the closing call wait for the next auction;
    orders sent after the close, on weekends or holidays, for the next morning's open.
    """
    day = jst_date(ms)
    if is_trading_day(day):
        minute_of_day = (ms - day_start_ms(day)) // MS_PER_MIN
        if minute_of_day < 9 * 60:
            return day, 0
        if minute_of_day < 15 * 60 + 30:
            minute = session_minute(ms - day_start_ms(day))
            if minute is None:
                return day, AFTERNOON_OPEN
            return day, CLOSING_AUCTION if minute >= PRE_CLOSE else minute
    return next_trading_day(day), 0


def in_session_or_next_open(ms: int) -> int:
    """`ms` if the market is open then (and not about to close), else the next opening bell."""
    day = jst_date(ms)
    ms_of_day = ms - day_start_ms(day)
    if is_trading_day(day) and session_minute(ms_of_day) is not None and ms_of_day < 15 * 3_600_000:
        return ms
    if is_trading_day(day) and ms_of_day < 9 * 3_600_000:
        return day_start_ms(day) + 9 * 3_600_000
    if is_trading_day(day) and 11 * 3_600_000 + 30 * MS_PER_MIN <= ms_of_day < 12 * 3_600_000 + 30 * MS_PER_MIN:
        return day_start_ms(day) + 12 * 3_600_000 + 30 * MS_PER_MIN
    return day_start_ms(next_trading_day(day)) + 9 * 3_600_000


def random_session_ms(day: dt.date, rng: np.random.Generator, first: int = 0, last: int = PRE_CLOSE) -> int:
    """A uniformly random instant during continuous trading between session minutes `first` and `last`."""
    return bar_start_ms(day, int(rng.integers(first, last))) + int(rng.integers(MS_PER_MIN))
