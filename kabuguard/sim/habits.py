"""Benign customers' sessions: when, from where, on which device, and what they trade.

Confounders live on the customer (a trip, a new phone, a return from dormancy, a shared IP) and
change only the context of a session; the habits themselves stay the customer's own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from kabuguard.sim.brokerage import Brokerage, Session, Tag
from kabuguard.sim.clock import day_start_ms, is_trading_day, jst_date, jst_hour
from kabuguard.sim.customers import Customer
from kabuguard.sim.devices import api_agent
from kabuguard.sim.networks import Networks

Job = tuple[int, Callable[[], None]]

WEEKEND_FACTOR = 0.35
RETURNED_RATE = 0.8  # sessions a day of a dormant account once it is back
NO_FINGERPRINT = 0.015  # web sessions whose browser blocks the firm's fingerprint script
VPN_ON = 0.6  # sessions a VPN user runs through the VPN
CASH_OUT_RATE = 0.01  # trading sessions that sell every position at market
TYPO_RATE = 0.03  # sessions preceded by a mistyped password
# Account changes per session, by field (notification settings dominate; bank details are rare).
CHANGE_RATE = 0.006
CHANGE_FIELDS: dict[str, float] = {
    "notification_settings": 0.45, "address": 0.15, "password": 0.14, "email": 0.1,
    "phone": 0.08, "mfa": 0.06, "bank_account": 0.02,
}


@dataclass(frozen=True, slots=True)
class Context:
    """Where one session comes from."""

    ip: str
    device_id: str | None
    user_agent: str
    channel: str
    group: str | None


class Habits:
    def __init__(self, broker: Brokerage, networks: Networks, rng: np.random.Generator) -> None:
        self.broker = broker
        self.networks = networks
        self.rng = rng
        self._fields = list(CHANGE_FIELDS)
        self._field_p = np.array(list(CHANGE_FIELDS.values()))

    def prepare(self, customers: list[Customer]) -> None:
        """Freeze what `day_jobs` draws from, once the planners have marked the customers."""
        self._customers = [c for c in customers if c.role is None]
        self._rate = np.array([c.rate for c in self._customers])
        self._returns = np.array([-1 if c.returns_ms is None else c.returns_ms for c in self._customers])
        self._hours = np.array([c.hours for c in self._customers])

    def day_jobs(self, day: dt.date) -> list[Job]:
        """Every ordinary session of `day`, as (start ms, action)."""
        rng, start = self.rng, day_start_ms(day)
        factor = 1.0 if day.weekday() < 5 else WEEKEND_FACTOR
        # A dormant account that comes back logs in on its return day and keeps visiting.
        rate = np.where(self._returns < 0, self._rate, np.where(self._returns <= start, RETURNED_RATE, 0.0))
        counts = rng.poisson(rate * factor)
        counts = np.maximum(counts, self._returns == start)
        who = np.repeat(np.arange(len(counts)), counts)
        hours = self._hours[who, rng.integers(2, size=len(who))] + rng.normal(0, 0.8, len(who))
        jitter = rng.integers(60_000, size=len(who))
        jobs: list[Job] = []
        for i, hour, ms_in_minute in zip(who.tolist(), hours.tolist(), jitter.tolist(), strict=True):
            c = self._customers[i]
            if c.trip is not None and c.trip.start_ms <= start < c.trip.end_ms:
                hour += c.trip.hour_shift
            ms = start + int((hour % 24) * 60) * 60_000 + ms_in_minute
            jobs.append((ms, partial(self.session, c, ms)))
        return jobs

    def context(self, c: Customer, ms: int) -> Context:
        """The device, network and channel of a session at `ms`, confounders applied."""
        rng = self.rng
        devices = c.devices
        group = c.group if c.group in ("smallcap_enthusiast", "dormant_return") else None
        if c.switch is not None and ms >= c.switch[0]:
            devices = [c.switch[2] if d is c.switch[1] else d for d in devices]
            group = "new_phone"
        if c.api_ip is not None and rng.random() < 0.5:
            return Context(c.api_ip, None, api_agent(rng), "api", group)
        device = devices[int(rng.integers(len(devices)))].at(ms)
        channel = "app" if device.app_ua and rng.random() < 0.75 else "web"
        ua = device.app_ua if channel == "app" else device.web_ua
        device_id = None if channel == "web" and rng.random() < NO_FINGERPRINT else device.device_id
        if c.trip is not None and c.trip.start_ms <= ms < c.trip.end_ms:
            ip = c.trip.hotel_ip if rng.random() < 0.7 else c.trip.network.address(rng)
            return Context(ip, device_id, ua, channel, "travel")
        if c.proxy is not None and channel == "web" and _proxied(c.proxy, ua, rng):
            return Context(self.networks.address(c.proxy, rng), device_id, ua, channel, "shared_ip")
        if device.kind == "phone" and rng.random() < 0.55:
            return Context(c.carrier.address(rng), device_id, ua, channel, group)
        if c.shared_ip is not None and (not c.office or _office_hours(ms)):
            return Context(c.shared_ip, device_id, ua, channel, "shared_ip")
        return Context(c.home_ip, device_id, ua, channel, group)

    def session(
        self, c: Customer, ms: int, buy_symbol: int | None = None, group: str | None = None, changes: tuple[str, ...] = (),
    ) -> None:
        """One visit: perhaps a typo first, the login, perhaps a settings change, some orders.
        `buy_symbol` makes the customer buy that symbol (news), tagged with `group`; `changes`
        makes the visit only change those settings (an owner locking the account again)."""
        rng, broker = self.rng, self.broker
        ctx = self.context(c, ms)
        tag = Tag(group=group or ctx.group)
        where = {"ip": ctx.ip, "user_agent": ctx.user_agent, "device_id": ctx.device_id, "channel": ctx.channel}
        if rng.random() < TYPO_RATE:
            broker.login(c, ms, tag, success=False, **where)
            ms += int(rng.integers(5_000, 40_000))
        session = broker.login(c, ms, tag, **where)
        for field in changes:
            ms += int(rng.integers(20_000, 180_000))
            broker.change(c, ms, tag, session, field)
        if changes:
            return
        if rng.random() < CHANGE_RATE:
            ms += int(rng.integers(20_000, 300_000))
            broker.change(c, ms, tag, session, self._fields[int(rng.choice(len(self._fields), p=self._field_p))])
        if buy_symbol is not None:
            ms += int(rng.integers(20_000, 180_000))
            self.buy(c, ms, tag, session, buy_symbol, market=True)
            return
        if rng.random() >= c.trade_prob * (1.0 if is_trading_day(jst_date(ms)) else 0.3):
            return
        if c.holdings and rng.random() < CASH_OUT_RATE:  # a house, a tuition bill: sell everything
            for symbol in [s for s, q in c.holdings.items() if q > 0]:
                ms += int(rng.integers(10_000, 90_000))
                self.broker.order(c, ms, tag, session, symbol=symbol, buy=False, qty=c.holdings[symbol])
            return
        for _ in range(1 + int(rng.poisson(0.4))):
            ms += int(rng.integers(15_000, 240_000))
            held = [s for s, q in c.holdings.items() if q > 0]
            if held and rng.random() < 0.42:
                symbol = held[int(rng.integers(len(held)))]
                self.sell(c, ms, tag, session, symbol)
            else:
                symbol = int(c.favourites[int(rng.integers(len(c.favourites)))])
                self.buy(c, ms, tag, session, symbol)

    def buy(self, c: Customer, ms: int, tag: Tag, session: Session, symbol: int, market: bool = False) -> None:
        """A buy sized to the customer's habit and cash; skipped when one unit is too dear."""
        rng = self.rng
        value = max(0.0, c.cash) * min(1.0, c.buy_fraction * rng.lognormal(0, 0.4))
        pricing = self._pricing(market, buy=True)
        qty = self.broker.lots_for(symbol, value, ms, **pricing)
        if qty:
            self.broker.order(c, ms, tag, session, symbol=symbol, buy=True, qty=qty, **pricing)

    def sell(self, c: Customer, ms: int, tag: Tag, session: Session, symbol: int) -> None:
        """Sell all of a position or part of it, in whole units where possible."""
        held = c.holdings[symbol]
        qty = held if held <= 100 or self.rng.random() < 0.5 else max(100, int(held * self.rng.uniform(0.2, 0.8)) // 100 * 100)
        self.broker.order(c, ms, tag, session, symbol=symbol, buy=False, qty=qty, **self._pricing(False, buy=False))

    def _pricing(self, market: bool, buy: bool) -> dict:
        """Market orders, or limits near the last price (a little through it, sometimes away)."""
        if market or self.rng.random() < 0.4:
            return {}
        offset = float(self.rng.normal(0.004, 0.01))
        return {"limit_offset": offset if buy else -offset}


def _proxied(category: str, user_agent: str, rng: np.random.Generator) -> bool:
    """Private Relay carries every Safari session; a VPN is switched on for some sessions."""
    if category == "privacy_relay":
        return "Version/" in user_agent
    return rng.random() < VPN_ON


def _office_hours(ms: int) -> bool:
    return jst_date(ms).weekday() < 5 and 8 <= jst_hour(ms) < 19
