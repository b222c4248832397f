"""Buying a thin stock: an order that is large against the symbol's average daily volume.

Pumping works only where little trades: a buy worth a visible share of a day's volume moves
the price. The finding grows with the order's share of ADV. Buy pressure from all customers
in a window raises a `symbol_alert` for analysts (one per episode). Known false positives:
small-cap enthusiasts, news-driven interest (the campaign detector, not this one, tells them
apart by who is buying).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, param


class PressureState(msgspec.Struct):
    buys: list[tuple[int, int]] = []  # (ts_us, qty) of recent buy orders
    alert_until_us: int = 0


class ThinStockBuy:
    name: ClassVar[str] = "thin_stock_buy"
    stage: ClassVar[str] = "symbol"
    types: ClassVar[frozenset[str]] = frozenset({"order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.min_adv_share = float(param(params, "min_adv_share", self.name))
        self.weight = float(param(params, "weight", self.name))
        self.max_weight = float(param(params, "max_weight", self.name))
        self.window_us = int(float(param(params, "pressure_window_minutes", self.name)) * 60_000_000)
        self.alert_adv_share = float(param(params, "alert_adv_share", self.name))

    def initial(self) -> PressureState:
        return PressureState()

    def score(self, event: Any, state: PressureState, ev: Evidence) -> None:
        adv = ev.instrument.adv_shares if ev.instrument is not None else None
        if event.side != "buy" or not adv:
            return
        share = event.qty / adv
        if share >= self.min_adv_share:
            weight = min(self.max_weight, self.weight + math.log(share / self.min_adv_share))
            ev.findings.append(Finding(self.name, weight))
        cutoff = event.ts_us - self.window_us
        pressure = (event.qty + sum(q for t, q in state.buys if t > cutoff)) / adv
        if pressure >= self.alert_adv_share and event.ts_us >= state.alert_until_us:
            ev.alerts.append({
                "type": "symbol_alert", "symbol": event.symbol,
                "score": round(min(1.0, pressure / (4 * self.alert_adv_share)), 4),
                "reasons": ["thin_stock_buy_pressure"],
                "evidence": {"buy_adv_share": round(pressure, 4)},
            })

    def learn(self, event: Any, state: PressureState, ev: Evidence) -> None:
        if event.side != "buy":
            return
        cutoff = event.ts_us - self.window_us
        state.buys = [(t, q) for t, q in state.buys if t > cutoff]
        state.buys.append((event.ts_us, event.qty))
        if any(a["type"] == "symbol_alert" for a in ev.alerts):
            state.alert_until_us = event.ts_us + self.window_us
