"""Trading outside the account's own history: a new symbol, a new market segment, an odd size.

A hijacked account buys what the attacker wants, not what its owner buys: symbols the owner
never held, a segment (Growth, Standard) the owner never traded, sizes far from the owner's.
Each is a likelihood ratio against the account's own rate of doing the same. Known false
positives: a customer trying a first small cap, a bonus spent on one large order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, count, number, param, positive, probability
from kabuguard.detectors.money import to_jpy


class TradingState(msgspec.Struct):
    symbols: dict[str, int] = {}
    first_orders: dict[str, int] = {}  # symbol -> time of the account's first order in it
    segments: dict[str, int] = {}
    orders: int = 0
    new_symbol_orders: int = 0
    size_n: int = 0
    size_mean: float = 0.0
    size_m2: float = 0.0
    recorded: bool = False  # an `account` record listed the holdings


class UnusualTrading:
    name: ClassVar[str] = "unusual_trading"
    stage: ClassVar[str] = "account"
    types: ClassVar[frozenset[str]] = frozenset({"account", "order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.alpha = positive(params, "alpha", self.name)
        self.p_new_symbol_customer = probability(params, "p_new_symbol_customer", self.name)
        self.log_p_new_attack = math.log(probability(params, "p_new_symbol_attack", self.name))
        self.min_orders = count(params, "min_orders", self.name)
        self.fx_jpy = param(params, "fx_jpy", self.name)
        self.new_segment_weight = number(params, "new_segment_weight", self.name)
        self.size_z = number(params, "size_z", self.name)
        self.size_weight = number(params, "size_weight", self.name)

    def initial(self) -> TradingState:
        return TradingState()

    def score(self, event: Any, state: TradingState, ev: Evidence) -> None:
        if event.kind != "order":
            return
        ev.first_order_us = state.first_orders.get(event.symbol, 0)
        found = ev.findings
        if _new_symbol(state, event):
            own = (state.new_symbol_orders + self.alpha * self.p_new_symbol_customer) / (state.orders + self.alpha)
            found.append(Finding("new_symbol", self.log_p_new_attack - math.log(own)))
        if state.orders < self.min_orders:
            return
        segment = _segment(ev)
        if segment and segment not in state.segments:
            found.append(Finding("new_segment", self.new_segment_weight))
        size = _log_notional(event, ev, self.fx_jpy)
        if size is not None and state.size_n >= self.min_orders:
            sd = math.sqrt(state.size_m2 / (state.size_n - 1)) if state.size_n > 1 else 0.0
            z = (size - state.size_mean) / max(sd, 0.5)
            if z >= self.size_z:
                found.append(Finding("unusual_order_size", self.size_weight))

    def learn(self, event: Any, state: TradingState, ev: Evidence) -> None:
        if event.kind == "account":
            for h in event.holdings:
                state.symbols.setdefault(h.symbol, 0)
            state.recorded = True
            return
        state.orders += 1
        if _new_symbol(state, event):
            state.new_symbol_orders += 1
        state.symbols[event.symbol] = state.symbols.get(event.symbol, 0) + 1
        state.first_orders.setdefault(event.symbol, event.ts_us)
        segment = _segment(ev)
        if segment:
            state.segments[segment] = state.segments.get(segment, 0) + 1
        size = _log_notional(event, ev, self.fx_jpy)
        if size is not None:  # Welford's running mean and variance of log notional
            state.size_n += 1
            delta = size - state.size_mean
            state.size_mean += delta / state.size_n
            state.size_m2 += delta * (size - state.size_mean)


def _new_symbol(state: TradingState, event: Any) -> bool:
    """An order in a symbol the account never held or traded. Without the `account` record a
    sell of one not seen before is of a holding nobody listed: new to us, not to the account."""
    return event.symbol not in state.symbols and (state.recorded or event.side == "buy")


def _segment(ev: Evidence) -> str | None:
    return ev.instrument.market if ev.instrument is not None else None


def _log_notional(event: Any, ev: Evidence, fx_jpy: Mapping[str, float]) -> float | None:
    """The order's log value in yen: one scale for an account that trades in several currencies."""
    inst = ev.instrument
    price = event.limit_price or (inst.last_price if inst is not None else None)
    if not price or price <= 0 or event.qty <= 0:  # a nonsensical price has no size to compare
        return None
    value = to_jpy(price * event.qty, inst.currency if inst is not None else None, fx_jpy)
    return math.log(value) if value else None
