"""Benign behaviour a naive detector would flag, labelled by `group` so false positives can be
counted per cause: travel abroad, a new phone, dormant accounts returning, small-cap
enthusiasts, households and offices sharing one address, and a news-driven buying burst."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import partial

import numpy as np

from kabuguard.sim.clock import (
    AFTERNOON_OPEN,
    MS_PER_DAY,
    MS_PER_MIN,
    PRE_CLOSE,
    bar_start_ms,
    day_start_ms,
    is_trading_day,
    iso,
)
from kabuguard.sim.customers import Customer, Trip
from kabuguard.sim.devices import new_device
from kabuguard.sim.habits import Habits, Job
from kabuguard.sim.instruments import Universe
from kabuguard.sim.market import Market
from kabuguard.sim.networks import Networks

# Share of customers per confounder (of the active ones unless said otherwise).
SHARES: dict[str, float] = {
    "travel": 0.012,
    "new_phone": 0.012,  # of customers with a phone
    "dormant_return": 0.03,  # of dormant accounts
    "smallcap_enthusiast": 0.02,
    "household": 0.04,
    "office": 0.015,
    "private_relay": 0.1,  # of Safari users
    "vpn": 0.02,
}
TIME_ZONES = {"US": -4, "KR": 9, "TW": 8, "TH": 7}  # hours from UTC, spring 2025
NEWS_BURST_EVERY_DAYS = 7  # one news-driven burst per week of simulated time, at least one
NEWS_BUYERS_SHARE = 0.004  # of active customers, at least NEWS_MIN_BUYERS
NEWS_MIN_BUYERS = 12
NEWS_MARKET_ADV = (4.0, 10.0)  # the rest of the market buys this many ADVs within the hour


@dataclass(frozen=True)
class NewsBurst:
    symbol: int
    start: int
    end: int


class Confounders:
    def __init__(
        self, customers: list[Customer], universe: Universe, networks: Networks, habits: Habits,
        market: Market, days: list[dt.date], rng: np.random.Generator,
    ) -> None:
        self.customers, self.universe, self.networks = customers, universe, networks
        self.habits, self.market, self.days, self.rng = habits, market, days, rng
        self.bursts: list[NewsBurst] = []
        self._jobs: dict[dt.date, list[Job]] = {}

    def plan(self) -> None:
        """Mark customers (before campaigns pick victims among the unmarked) and schedule bursts.
        Each customer joins at most one group."""
        active = [c for c in self.customers if not c.dormant]
        dormant = [c for c in self.customers if c.dormant]
        self._travellers(self._draw(self._free(active), SHARES["travel"]))
        phones = [c for c in self._free(active) if any(d.kind == "phone" for d in c.devices)]
        self._new_phones(self._draw(phones, SHARES["new_phone"]))
        self._returning(self._draw(dormant, SHARES["dormant_return"]))
        self._enthusiasts(self._draw(self._free(active), SHARES["smallcap_enthusiast"]))
        safari = [c for c in self._free(active) if any("Version/" in d.web_ua for d in c.devices)]
        for c in self._draw(safari, SHARES["private_relay"]):
            c.group, c.proxy = "shared_ip", "privacy_relay"
        for c in self._draw(self._free(active), SHARES["vpn"]):
            c.group, c.proxy = "shared_ip", "vpn_exit"
        self._share_addresses(self._draw(self._free(active + dormant), SHARES["household"]), (2, 4), "residential_jp")
        self._share_addresses(self._draw(self._free(active), SHARES["office"]), (5, 16), "office")
        self._plan_news(active)

    def _instant(self) -> int:
        """A uniformly random instant of the run."""
        return day_start_ms(self.days[0]) + int(self.rng.integers(len(self.days) * MS_PER_DAY))

    def _travellers(self, customers: list[Customer]) -> None:
        for c in customers:
            net = self.networks.pick("residential_abroad", self.rng)
            start = self._instant()
            c.group = "travel"
            c.trip = Trip(start, start + int(self.rng.integers(3, 11)) * MS_PER_DAY, net, net.address(self.rng),
                          hour_shift=9 - TIME_ZONES[net.country])

    def _new_phones(self, customers: list[Customer]) -> None:
        for c in customers:
            old = next(d for d in c.devices if d.kind == "phone")
            c.group = "new_phone"
            c.switch = (self._instant(), old, new_device(self.rng, "phone"))

    def _returning(self, customers: list[Customer]) -> None:
        for c in customers:
            c.group = "dormant_return"
            c.returns_ms = day_start_ms(self.days[0]) + int(self.rng.integers(len(self.days))) * MS_PER_DAY
            if self.rng.random() < 0.5:  # the old phone is long gone
                c.devices = [new_device(self.rng, "phone"), *c.devices[1:]]

    def _enthusiasts(self, customers: list[Customer]) -> None:
        thin = np.flatnonzero(self.universe.thin)
        for c in customers:
            c.group = "smallcap_enthusiast"
            c.favourites = self.rng.choice(thin, size=min(len(thin), int(self.rng.integers(4, 10))), replace=False)
            c.rate, c.trade_prob = c.rate * 2 + 0.3, max(c.trade_prob, 0.5)

    def _free(self, customers: list[Customer]) -> list[Customer]:
        return [c for c in customers if c.group is None]

    def _draw(self, pool: list[Customer], share: float) -> list[Customer]:
        k = min(len(pool), round(len(pool) * share))
        return [pool[i] for i in sorted(self.rng.choice(len(pool), size=k, replace=False))]

    def _share_addresses(self, members: list[Customer], size: tuple[int, int], category: str) -> None:
        """Group `members` into households or offices, each behind one address."""
        rng, i = self.rng, 0
        while i < len(members):
            group = members[i : i + int(rng.integers(*size))]
            net = self.networks.pick(category, rng)
            address = net.address(rng)
            # Half the households also share the family PC or tablet between their accounts.
            family = new_device(rng, "pc" if rng.random() < 0.6 else "tablet") if category != "office" and rng.random() < 0.5 else None
            for c in group:
                c.group, c.shared_ip, c.office = "shared_ip", address, category == "office"
                if not c.office:
                    c.home, c.home_ip = net, address
                if family is not None:
                    c.devices = [*c.devices, family]
            i += len(group)

    def _plan_news(self, active: list[Customer]) -> None:
        rng = self.rng
        trading = [d for d in self.days if is_trading_day(d)]
        if not trading:
            return
        count = max(1, len(self.days) // NEWS_BURST_EVERY_DAYS)
        thin = np.flatnonzero(self.universe.thin)
        readers = self._free(active)
        for day in sorted(rng.choice(len(trading), size=min(count, len(trading)), replace=False)):
            day = trading[int(day)]
            symbol = int(rng.choice(thin))
            # Not in the last hour before lunch or the close: the hour of buying stays in one session.
            minute = int(rng.choice([*range(15, AFTERNOON_OPEN - 60), *range(AFTERNOON_OPEN + 5, PRE_CLOSE - 60)]))
            start = bar_start_ms(day, minute) + int(rng.integers(MS_PER_MIN))
            end = start + 60 * MS_PER_MIN
            self.bursts.append(NewsBurst(symbol, start, end))
            buyers = max(NEWS_MIN_BUYERS, int(len(active) * NEWS_BUYERS_SHARE))
            for i in rng.choice(len(readers), size=min(buyers, len(readers)), replace=False):
                c = readers[int(i)]
                ms = start + int(min(rng.exponential(15), 55) * MS_PER_MIN)
                self._jobs.setdefault(day, []).append(
                    (ms, partial(self.habits.session, c, ms, buy_symbol=symbol, group="news_burst"))
                )
            decay = np.exp(-np.arange(60) / 15)
            total = self.universe.adv[symbol] * rng.uniform(*NEWS_MARKET_ADV)
            self.market.add_outside_buying(day, symbol, minute, total * decay / decay.sum())

    def day_jobs(self, day: dt.date) -> list[Job]:
        return self._jobs.pop(day, [])

    def episodes(self) -> list[dict]:
        return [
            {"kind": "pump_episode", "symbol": self.universe.codes[b.symbol], "start": iso(b.start),
             "end": iso(b.end), "campaign_id": None, "news": True}
            for b in self.bursts
        ]
