"""Holdings liquidation: selling most of a position, or several positions, in a short time.

The 2025 attackers sold the victims' holdings to free cash for the pump. Customers sell whole
positions too, so alone this is modest evidence; with a risky session it is decisive.
Holdings come from the `account` record and move with executions. A buy of a thin stock the
account does not hold, within hours of such sells, is the scheme itself: the victim's money
moved into the pump (`liquidate_into_thin_stock`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, param


class HoldingsState(msgspec.Struct):
    holdings: dict[str, int] = {}
    sells: dict[str, int] = {}  # symbol -> time of a recent large sell


class HoldingsLiquidation:
    name: ClassVar[str] = "holdings_liquidation"
    stage: ClassVar[str] = "account"
    types: ClassVar[frozenset[str]] = frozenset({"account", "order", "execution"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.min_fraction = float(param(params, "min_fraction", self.name))
        self.window_us = int(float(param(params, "window_hours", self.name)) * 3_600_000_000)
        self.weight = float(param(params, "weight", self.name))
        self.into_thin_weight = float(param(params, "into_thin_weight", self.name))
        self.thin_adv_value = float(param(params, "thin_adv_value_jpy", self.name))

    def initial(self) -> HoldingsState:
        return HoldingsState()

    def score(self, event: Any, state: HoldingsState, ev: Evidence) -> None:
        if event.kind != "order":
            return
        cutoff = event.ts_us - self.window_us
        sold = sum(1 for s, t in state.sells.items() if t > cutoff and s != event.symbol)
        if event.side == "buy":
            if sold and state.holdings.get(event.symbol, 0) == 0 and self._thin(ev):
                ev.findings.append(Finding("liquidate_into_thin_stock", self.into_thin_weight + math.log(sold)))
            return
        held = state.holdings.get(event.symbol, 0)
        if held > 0 and event.qty >= self.min_fraction * held:
            ev.findings.append(Finding(self.name, self.weight + math.log(1 + sold)))

    def _thin(self, ev: Evidence) -> bool:
        inst = ev.instrument
        return inst is not None and bool(inst.adv_shares and inst.last_price) and \
            inst.adv_shares * inst.last_price <= self.thin_adv_value

    def learn(self, event: Any, state: HoldingsState, ev: Evidence) -> None:
        kind = event.kind
        if kind == "account":
            state.holdings = {h.symbol: h.qty for h in event.holdings}
        elif kind == "execution":
            delta = event.qty if event.side == "buy" else -event.qty
            state.holdings[event.symbol] = max(0, state.holdings.get(event.symbol, 0) + delta)
        elif event.kind == "order" and event.side == "sell":
            held = state.holdings.get(event.symbol, 0)
            cutoff = event.ts_us - self.window_us
            state.sells = {s: t for s, t in state.sells.items() if t > cutoff}
            if held > 0 and event.qty >= self.min_fraction * held:
                state.sells[event.symbol] = event.ts_us
