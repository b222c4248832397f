"""Holdings liquidation: selling most of a position, or several positions, in a short time.

The 2025 attackers sold the victims' holdings to free cash for the pump. Customers sell whole
positions too, so alone this is modest evidence; with a risky session it is decisive.
Holdings come from the `account` record and move with executions.
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

    def initial(self) -> HoldingsState:
        return HoldingsState()

    def score(self, event: Any, state: HoldingsState, ev: Evidence) -> None:
        if event.kind != "order" or event.side != "sell":
            return
        held = state.holdings.get(event.symbol, 0)
        if held <= 0 or event.qty < self.min_fraction * held:
            return
        cutoff = event.ts_us - self.window_us
        positions = 1 + sum(1 for s, t in state.sells.items() if t > cutoff and s != event.symbol)
        ev.findings.append(Finding(self.name, self.weight + math.log(positions)))

    def learn(self, event: Any, state: HoldingsState, ev: Evidence) -> None:
        kind = event.kind
        if kind == "account":
            state.holdings = {h.symbol: h.qty for h in event.holdings}
        elif kind == "execution":
            delta = event.qty if event.side == "buy" else -event.qty
            state.holdings[event.symbol] = max(0, state.holdings.get(event.symbol, 0) + delta)
        elif event.side == "sell":
            held = state.holdings.get(event.symbol, 0)
            cutoff = event.ts_us - self.window_us
            state.sells = {s: t for s, t in state.sells.items() if t > cutoff}
            if held > 0 and event.qty >= self.min_fraction * held:
                state.sells[event.symbol] = event.ts_us
