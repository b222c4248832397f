"""The firm's systems as the simulator drives them: sessions, account changes, orders, fills.

Every actor (customers, confounders, attackers) acts through these few methods, so that all
events share one shape and only the `Tag` (the label, never written into events) differs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from kabuguard.sim.clock import (
    BARS_PER_DAY,
    CLOSING_AUCTION,
    MS_PER_MIN,
    bar_start_ms,
    fill_slot,
)
from kabuguard.sim.customers import Customer
from kabuguard.sim.market import DayBars, Market, round_tick_one

# The other brokerages a campaign trades through at the same time: the whole market sees this
# multiple of the buying and selling it does through the simulated firm (9 firms were hit by
# April 2025; we count the simulated one plus three others active in the same minutes).
OTHER_FIRMS_FACTOR = 3.0


@dataclass(frozen=True, slots=True)
class Tag:
    """The ground truth of one event, written to labels.jsonl only."""

    fraud: bool = False
    campaign_id: str | None = None
    attack_style: str | None = None
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """What every event of one login carries: its id, address, fingerprint and channel."""

    session_id: str
    ip: str
    device_id: str | None
    channel: str


@dataclass(slots=True)
class _Pending:
    event: dict
    customer: Customer
    symbol: int
    buy: bool
    qty: int
    limit: float | None
    reserved_price: float
    sent_ms: int
    minute: int
    weight: float  # how many times the whole market trades it (campaigns trade at other firms too)


@dataclass(slots=True)
class Recorded:
    ms: int
    event: dict
    tag: Tag | None  # None for executions (not decided, not labelled)


class Brokerage:
    """Holds the day's events, the customers' cash and positions, and the unfilled orders."""

    def __init__(self, market: Market, rng: np.random.Generator, multi_firm: bool) -> None:
        self.market = market
        self.rng = rng
        self.multi_firm = multi_firm
        self.events: list[Recorded] = []
        self._pending: dict[dt.date, list[_Pending]] = {}
        self._session_ids: list[int] = []
        self._net: dict[dt.date, np.ndarray] = {}  # net shares bought so far, per fill day
        self._settled: dict[int, dict[int, int]] = {}  # positions after the executions so far
        self._cash: dict[int, float] = {}  # cash after the executions so far

    # -- activity -----------------------------------------------------------------------------

    def _record(self, c: Customer, ms: int, tag: Tag | None, event_type: str, fields: dict) -> dict:
        event = {"event_id": "", "type": event_type, "ts": ms}
        if self.multi_firm:
            event["firm"] = c.firm
        event.update(fields)
        self.events.append(Recorded(ms, event, tag))
        return event

    def _session_id(self) -> str:
        if not self._session_ids:
            self._session_ids = self.rng.integers(1 << 63, size=4096).tolist()
        return f"s-{self._session_ids.pop():016x}"

    def login(
        self, c: Customer, ms: int, tag: Tag, *, ip: str, user_agent: str, device_id: str | None,
        channel: str, success: bool = True, mfa: str | None = None,
    ) -> Session:
        """Record a login attempt (failed ones get a session id too); returns the session."""
        session = Session(self._session_id(), ip, device_id, channel)
        self._record(c, ms, tag, "login", {
            "account_id": c.account_id, "session_id": session.session_id, "success": success, "ip": ip,
            "user_agent": user_agent, "device_id": device_id,
            "mfa": (c.mfa if mfa is None else mfa) if success else "none", "channel": channel,
        })
        return session

    def change(self, c: Customer, ms: int, tag: Tag, session: Session, field: str) -> None:
        self._record(c, ms, tag, "account_change", {
            "account_id": c.account_id, "session_id": session.session_id, "field": field,
            "ip": session.ip, "device_id": session.device_id,
        })

    def order(
        self, c: Customer, ms: int, tag: Tag, session: Session, *, symbol: int, buy: bool, qty: int,
        limit_offset: float | None = None,
    ) -> None:
        """Send an order at the market or `limit_offset` away from the quote (limit). Cash and
        shares are reserved now and released if the order does not fill."""
        day, minute = fill_slot(ms)
        quote = self.quote(symbol, ms)
        limit = None if limit_offset is None else self._limit(symbol, quote, limit_offset)
        event = self._record(c, ms, tag, "order", {
            "order_id": "", "account_id": c.account_id, "session_id": session.session_id,
            "symbol": self.market.universe.codes[symbol], "side": "buy" if buy else "sell", "qty": qty,
            "order_type": "market" if limit is None else "limit", "limit_price": limit,
            "ip": session.ip, "device_id": session.device_id, "channel": session.channel,
        })
        weight = 1.0 + (OTHER_FIRMS_FACTOR if tag.fraud else 0.0)
        self._net.setdefault(day, np.zeros(len(self.market.universe)))[symbol] += qty * weight * (1 if buy else -1)
        # Buys reserve their cash now, at the most they can cost (`buy_price`); a market sale is
        # buying power at once (it executes at once) at the quote its own selling moves to, a
        # limit sale only when it fills.
        price = limit or (self.buy_price(symbol, ms) if buy else self.quote(symbol, ms))
        if buy or limit is None:
            c.cash -= qty * price if buy else -qty * price
        _adjust(c.holdings, symbol, qty if buy else -qty)
        self._pending.setdefault(day, []).append(_Pending(event, c, symbol, buy, qty, limit, price, ms, minute, weight))

    def quote(self, symbol: int, ms: int) -> float:
        """What the order screen shows at `ms` for `symbol`."""
        day, minute = fill_slot(ms)
        net = self._net.get(day)
        return self.market.quote(symbol, day, minute, 0.0 if net is None else float(net[symbol]))

    def _limit(self, symbol: int, quote: float, offset: float) -> float:
        """A limit `offset` from the quote, on the tick grid and inside the day's price limits
        (the exchange takes no order priced beyond them)."""
        low, high = self.market.band(symbol)
        return min(max(round_tick_one(quote * (1 + offset)), low), high)

    def buy_price(self, symbol: int, ms: int, limit_offset: float | None = None) -> float:
        """What a buy sent at `ms` reserves per share: its limit, or for a market order the day's
        upper price limit, the most it can fill at. Japanese brokers count buying power so; at
        the quote, a market buy paid for its own impact (and the campaign's) out of cash it did
        not have."""
        if limit_offset is None:
            return self.market.band(symbol)[1]
        return self._limit(symbol, self.quote(symbol, ms), limit_offset)

    def lots_for(self, symbol: int, value_jpy: float, ms: int, limit_offset: float | None = None) -> int:
        """Shares (whole 100-share units) that `value_jpy` of buying power buys at `buy_price`."""
        return int(value_jpy // (self.buy_price(symbol, ms, limit_offset) * 100)) * 100

    # -- the market's side ------------------------------------------------------------------

    def flows(self, day: dt.date) -> tuple[np.ndarray, np.ndarray]:
        """Shares bought and sold per (symbol, minute) on `day`, the campaigns' other-firm
        trading included."""
        n = len(self.market.universe)
        bought = np.zeros((n, BARS_PER_DAY))
        sold = np.zeros((n, BARS_PER_DAY))
        for p in self._pending.get(day, ()):
            (bought if p.buy else sold)[p.symbol, p.minute] += p.qty * p.weight
        return bought, sold

    def fill(self, day: dt.date, bars: DayBars) -> None:
        """Execute `day`'s orders at the close of their minute's bar. A limit that is not
        marketable there, a sale of shares that never arrived (their buy did not fill) or a buy
        the account's cash cannot pay at that price stays unfilled and releases its reservation.
        A buy's reservation covers its price unless a market sale it counted on filled below its
        quote, or it was sent after the close, on the day before's limits."""
        self._net.pop(day, None)
        # In the order they were sent: two overlapping sessions of one account (the owner and an
        # attacker, say) were generated one after the other, not interleaved.
        for p in sorted(self._pending.pop(day, ()), key=lambda p: p.sent_ms):
            c = p.customer
            price = float(bars.close[p.symbol, p.minute])
            marketable = p.limit is None or (price <= p.limit if p.buy else price >= p.limit)
            if p.buy:
                covered = self._cash[c.index] >= p.qty * price
            else:
                covered = self._settled[c.index].get(p.symbol, 0) >= p.qty
            sign = 1 if p.buy else -1
            credited = p.buy or p.limit is None
            if not (marketable and covered):
                c.cash += sign * p.qty * p.reserved_price if credited else 0.0
                _adjust(c.holdings, p.symbol, -sign * p.qty)
                continue
            c.cash += sign * ((p.reserved_price if credited else 0.0) - price) * p.qty
            self._cash[c.index] -= sign * p.qty * price
            _adjust(self._settled[c.index], p.symbol, sign * p.qty)
            ms = _execution_ms(day, p.minute, p.sent_ms + int(self.rng.integers(40, 1500)))
            self._record(c, ms, None, "execution", {
                "order_id": p.event, "account_id": c.account_id, "symbol": p.event["symbol"],
                "side": p.event["side"], "qty": p.qty, "price": price,
            })

    def open_books(self, customers: list[Customer]) -> None:
        """The positions and cash actually held at the start, before any order reserves them."""
        self._settled = {c.index: dict(c.holdings) for c in customers}
        self._cash = {c.index: c.cash for c in customers}

    def take_events(self) -> list[Recorded]:
        events, self.events = self.events, []
        return events


def _execution_ms(day: dt.date, minute: int, ms: int) -> int:
    """`ms` (the order's latency after sending) kept inside the bar that priced the execution, so
    that the bar of its timestamp prints its price and counts its shares: the closing auction
    prints at its end (15:30), any other bar within its minute (an auction at its start)."""
    start = bar_start_ms(day, minute)
    if minute == CLOSING_AUCTION:
        return start + MS_PER_MIN
    return min(max(start, ms), start + MS_PER_MIN - 1)


def _adjust(holdings: dict[int, int], symbol: int, delta: int) -> None:
    qty = holdings.get(symbol, 0) + delta
    if qty:
        holdings[symbol] = qty
    else:
        holdings.pop(symbol, None)
