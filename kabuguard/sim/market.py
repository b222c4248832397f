"""The whole market's one-minute bars, moved by the simulated order flow.

Each symbol's day: a log-normal day volume around its ADV spread over the session with the
usual U shape (opening, afternoon and closing auctions heavy), a random walk for the price, and
the order flow we simulate on top: net buying raises the price (a permanent and a decaying
part, per ADV traded), big moves draw in momentum traders (more volume), and TSE daily price
limits cap the move, as they capped the 2025 pumps at limit-up. Thin names skip the minutes
without trades.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from kabuguard.sim.clock import AFTERNOON_OPEN, BARS_PER_DAY, CLOSING_AUCTION, PRE_CLOSE
from kabuguard.sim.instruments import Universe

# TSE daily price limits: (previous close below, limit in yen).
PRICE_LIMITS = np.array([
    (100, 30), (200, 50), (500, 80), (700, 100), (1_000, 150), (1_500, 300), (2_000, 400),
    (3_000, 500), (5_000, 700), (7_000, 1_000), (10_000, 1_500), (15_000, 3_000),
    (20_000, 4_000), (30_000, 5_000), (50_000, 7_000), (70_000, 10_000), (np.inf, 15_000),
])
# TSE tick sizes outside TOPIX100: (price up to, tick).
TICKS = np.array([(3_000, 1), (5_000, 5), (30_000, 10), (50_000, 50), (np.inf, 100)])

IMPACT_PERMANENT = 0.03  # log-price move per ADV of net buying that stays
IMPACT_TEMPORARY = 0.05  # ... and the part that decays
TEMPORARY_DECAY = np.exp(-1 / 20)  # per minute
MOMENTUM_VOLUME = 15.0  # volume multiple per unit of |log return| since the previous close
# Opening (09:00), morning close (11:30), afternoon opening (12:30) and closing (15:30) auctions.
AUCTION_SHARE = {0: 0.05, AFTERNOON_OPEN - 1: 0.01, AFTERNOON_OPEN: 0.015, CLOSING_AUCTION: 0.08}


def daily_limit(prev_close: np.ndarray) -> np.ndarray:
    """The TSE daily price limit (yen either way) for each previous close."""
    return PRICE_LIMITS[np.searchsorted(PRICE_LIMITS[:, 0], prev_close, side="right"), 1]


def _tick(price: np.ndarray) -> np.ndarray:
    return TICKS[np.searchsorted(TICKS[:, 0], price), 1]


def round_tick(price: np.ndarray) -> np.ndarray:
    tick = _tick(price)
    return np.maximum(tick, np.round(price / tick) * tick)


def round_tick_one(price: float) -> float:
    """`round_tick` for one price, without numpy's per-call overhead (one per order)."""
    tick = _TICK_SIZES[bisect.bisect_left(_TICK_BOUNDS, price)]
    return max(tick, round(price / tick) * tick)


def price_band(prev_close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest price each symbol may print today: the daily limit either side of
    the previous close, moved inwards onto the tick grid (above ¥3,000 the limit price itself
    need not be a tick: 2,663 + 500 is none)."""
    limit = daily_limit(prev_close)
    low, high = np.maximum(prev_close - limit, 1.0), prev_close + limit
    return np.ceil(low / _tick(low)) * _tick(low), np.floor(high / _tick(high)) * _tick(high)


_TICK_BOUNDS, _TICK_SIZES = TICKS[:, 0].tolist(), TICKS[:, 1].tolist()


def _intraday_profile() -> np.ndarray:
    """Share of the day's volume per session minute: U-shaped, auctions heavy, none 15:25-15:29."""
    m = np.arange(BARS_PER_DAY, dtype=float)
    w = 1 + 2.0 * np.exp(-m / 12) + 0.8 * np.exp(-(m - AFTERNOON_OPEN) / 10) * (m >= AFTERNOON_OPEN)
    w += 1.5 * np.exp(-(PRE_CLOSE - m) / 15) * (m < PRE_CLOSE)
    w[PRE_CLOSE:] = 0
    w *= (1 - sum(AUCTION_SHARE.values())) / w.sum()
    for minute, share in AUCTION_SHARE.items():
        w[minute] += share
    return w


@dataclass(frozen=True)
class DayBars:
    """Per (symbol, minute) arrays; a bar exists where volume > 0."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


class Market:
    def __init__(self, universe: Universe, rng: np.random.Generator) -> None:
        self.universe = universe
        self.rng = rng
        self._close_day(round_tick(universe.price).astype(float))
        self._adv_list: list[float] = universe.adv.tolist()  # a Python copy for the quote, as there
        big = universe.market_cap
        self.sigma_day = np.select([big > 1e12, big > 1e11, big > 1e10], [0.015, 0.02, 0.028], 0.035)
        self.sigma_day *= np.where(np.array(universe.markets) == "TSE Growth", 1.3, 1.0)
        self.profile = _intraday_profile()
        self._outside: dict[dt.date, list[tuple[int, int, np.ndarray]]] = {}

    def add_outside_buying(self, day: dt.date, symbol: int, minute: int, shares: np.ndarray) -> None:
        """Buying by the rest of the market (news readers elsewhere), `shares` per minute from `minute`."""
        self._outside.setdefault(day, []).append((symbol, minute, shares))

    def quote(self, symbol: int, day: dt.date, minute: int, net_shares: float) -> float:
        """The price a customer sees: the last close moved by the net buying of the day so far
        (`net_shares`, plus the outside buying before `minute`), within the daily limit."""
        net = net_shares + sum(
            float(shares[: max(0, minute - start)].sum())
            for s, start, shares in self._outside.get(day, ()) if s == symbol
        )
        prev = self._last_list[symbol]
        if not net:
            return prev
        moved = prev * math.exp((IMPACT_PERMANENT + IMPACT_TEMPORARY) * net / self._adv_list[symbol])
        return min(max(round_tick_one(moved), self._low_list[symbol]), self._high_list[symbol])

    def band(self, symbol: int) -> tuple[float, float]:
        """Today's lowest and highest possible price of `symbol` (see `price_band`)."""
        return self._low_list[symbol], self._high_list[symbol]

    def trade_day(self, day: dt.date, bought: np.ndarray, sold: np.ndarray) -> DayBars:
        """One trading day's bars given the simulated shares bought and sold per minute."""
        rng, n = self.rng, len(self.universe)
        bought = bought.copy()
        for symbol, minute, shares in self._outside.pop(day, ()):
            span = min(len(shares), BARS_PER_DAY - minute)
            bought[symbol, minute : minute + span] += shares[:span]
        prev = self.last.copy()
        low_cap, high_cap = price_band(prev)
        adv = self.universe.adv
        day_lots = adv * rng.lognormal(-0.1, 0.45, n) / 100
        sigma_min = self.sigma_day / np.sqrt(BARS_PER_DAY)
        log_price = np.log(prev) + rng.normal(0, 1, n) * self.sigma_day * 0.3  # overnight gap
        permanent = np.zeros(n)
        temporary = np.zeros(n)
        last_trade = prev.copy()
        shape = (n, BARS_PER_DAY)
        bars = DayBars(*(np.zeros(shape) for _ in range(4)), volume=np.zeros(shape, dtype=np.int64))
        noise = rng.normal(0, 1, shape) * sigma_min[:, None]
        wick = np.abs(rng.normal(0, 1, shape)) * sigma_min[:, None] * 0.7
        for m in range(BARS_PER_DAY):
            net = (bought[:, m] - sold[:, m]) / adv
            permanent += IMPACT_PERMANENT * net
            temporary = temporary * TEMPORARY_DECAY + IMPACT_TEMPORARY * net
            if self.profile[m] and m != CLOSING_AUCTION:
                log_price += noise[:, m]
            price = np.clip(round_tick(np.exp(log_price + permanent + temporary)), low_cap, high_cap)
            momentum = 1 + MOMENTUM_VOLUME * np.abs(np.log(price / prev))
            lots = rng.poisson(day_lots * self.profile[m] * momentum)
            volume = lots * 100 + np.rint(bought[:, m] + sold[:, m]).astype(np.int64)
            if m == 0:  # the opening auction's price, not yesterday's close, opens the day
                last_trade = np.where(volume > 0, price, last_trade)
            top, bottom = np.maximum(last_trade, price), np.minimum(last_trade, price)
            bars.open[:, m] = last_trade
            bars.close[:, m] = price
            bars.high[:, m] = np.clip(round_tick(top * (1 + wick[:, m])), top, high_cap)
            bars.low[:, m] = np.clip(round_tick(bottom * (1 - wick[:, m])), low_cap, bottom)
            bars.volume[:, m] = volume
            last_trade = np.where(volume > 0, price, last_trade)
        self._close_day(last_trade)
        return bars

    def _close_day(self, last: np.ndarray) -> None:
        """The closes the next day's quotes and limits start from; Python copies for the per-order
        quote, which numpy's per-call overhead would dominate."""
        self.last = last
        self._last_list: list[float] = last.tolist()
        low, high = price_band(last)
        self._low_list: list[float] = low.tolist()
        self._high_list: list[float] = high.tolist()
