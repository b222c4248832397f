"""Holdings liquidation: selling most of a position, or several positions, in a short time.

The 2025 attackers sold the victims' holdings to free cash for the pump. Customers sell whole
positions too, so alone this is modest evidence; with a risky session it is decisive.
Holdings come from the `account` record and move with executions. An export without the
record still shows some: a sell of a position the account is not known to hold proves it held
at least what it sells (`HoldingsState.recorded`), the liquidation test and the concentration
of the sell read that; a sell of such an account then counts as selling out unless the
export's own executions show a larger position. A buy of a
thin stock the account does not hold, within hours of such sells, is the scheme itself: the
victim's money moved into the pump (`liquidate_into_thin_stock`).

The other side of a pump: whoever means to sell into it holds the thin stock first, in a size
the market cannot absorb quietly. A buy that adds to a position already worth a large share of
the symbol's average daily volume (`concentrated_thin_position`) is pre-positioning as market
surveillance knows it, the more so from an account opened within the last year (attackers open
or buy accounts for the scheme; tenure is the oldest prior in fraud work); selling out of such a position is the distribution that follows (weaker
alone: holders sell for many reasons). Known false positives: a long-term holder of a micro cap
averaging down or taking profit.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, duration_us, number, param, share
from kabuguard.detectors.money import thin
from kabuguard.events.instants import parse_ts

_I64_MAX = 2**63 - 1


class HoldingsState(msgspec.Struct):
    holdings: dict[str, int] = {}
    sells: dict[str, int] = {}  # symbol -> time of a recent large sell
    opened_us: int = 0  # when the account was opened, 0 when unknown
    recorded: bool = False  # an `account` record gave the holdings; else a sell shows what was held


class HoldingsLiquidation:
    name: ClassVar[str] = "holdings_liquidation"
    stage: ClassVar[str] = "account"
    types: ClassVar[frozenset[str]] = frozenset({"account", "order", "execution"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.min_fraction = share(params, "min_fraction", self.name)
        self.window_us = duration_us(params, "window_hours", self.name)
        self.weight = number(params, "weight", self.name)
        self.into_thin_weight = number(params, "into_thin_weight", self.name)
        self.thin_adv_value = number(params, "thin_adv_value_jpy", self.name)
        self.fx_jpy = param(params, "fx_jpy", self.name)
        self.min_adv_days = number(params, "concentration_min_adv_days", self.name)
        self.concentration_weight = number(params, "concentration_weight", self.name)
        self.concentration_max_weight = number(params, "concentration_max_weight", self.name)
        self.concentration_sell_weight = number(params, "concentration_sell_weight", self.name)
        self.sell_min_adv_days = number(params, "concentration_sell_min_adv_days", self.name)
        self.young_us = duration_us(params, "young_account_days", self.name)
        self.young_weight = number(params, "young_account_weight", self.name)

    def initial(self) -> HoldingsState:
        return HoldingsState()

    def score(self, event: Any, state: HoldingsState, ev: Evidence) -> None:
        if event.kind != "order":
            return
        cutoff = event.ts_us - self.window_us
        sold = sum(1 for s, t in state.sells.items() if t > cutoff and s != event.symbol)
        if event.side == "buy":
            position = state.holdings.get(event.symbol, 0)
            if not self._thin(ev):
                return
            if sold and position == 0:
                ev.findings.append(Finding("liquidate_into_thin_stock", self.into_thin_weight + math.log(sold)))
            self._concentration(position, ev, self.concentration_weight + self._young(state, event),
                                self.min_adv_days)
            return
        held = self._held(state, event)
        if self._thin(ev):
            self._concentration(held, ev, self.concentration_sell_weight + self._young(state, event),
                                self.sell_min_adv_days)
        if held > 0 and event.qty >= self.min_fraction * held:
            ev.findings.append(Finding(self.name, self.weight + math.log(1 + sold)))

    @staticmethod
    def _held(state: HoldingsState, event: Any) -> int:
        """The position a sell comes out of: as recorded, or, where no record told, at least the
        sell itself. So without the record a sell of a position bought before the export looks
        like one of the whole (a part cannot be told from it): modest evidence alone, as for a
        recorded customer selling out, decisive only beside a risky session."""
        held = state.holdings.get(event.symbol, 0)
        return held if state.recorded else max(held, event.qty)

    def _young(self, state: HoldingsState, event: Any) -> float:
        """More for an account opened within `young_account_days`: tenure, the oldest prior in fraud."""
        young = bool(state.opened_us) and event.ts_us - state.opened_us < self.young_us
        return self.young_weight if young else 0.0

    def _concentration(self, position: int, ev: Evidence, base: float, adv_days: float) -> None:
        """A position worth `adv_days` of the symbol's volume or more; more the larger it is."""
        floor = adv_days * ev.instrument.adv_shares
        if base > 0 and floor > 0 and position >= floor:
            weight = min(self.concentration_max_weight, base + math.log(position / floor))
            ev.findings.append(Finding("concentrated_thin_position", weight))

    def _thin(self, ev: Evidence) -> bool:
        return thin(ev.instrument, self.fx_jpy, self.thin_adv_value, unknown=False)

    def learn(self, event: Any, state: HoldingsState, ev: Evidence) -> None:
        kind = event.kind
        if kind == "account":
            state.holdings = {h.symbol: h.qty for h in event.holdings}
            state.recorded = True
            if event.opened_at:  # read at the boundary (`model.Account`)
                state.opened_us = parse_ts(event.opened_at)
        elif kind == "execution":
            delta = event.qty if event.side == "buy" else -event.qty
            # Within 64 bits, as the service's state (msgpack) holds integers.
            state.holdings[event.symbol] = min(_I64_MAX, max(0, state.holdings.get(event.symbol, 0) + delta))
        elif event.kind == "order" and event.side == "sell":
            held = self._held(state, event)
            cutoff = event.ts_us - self.window_us
            state.sells = {s: t for s, t in state.sells.items() if t > cutoff}
            if held > 0 and event.qty >= self.min_fraction * held:
                state.sells[event.symbol] = event.ts_us
