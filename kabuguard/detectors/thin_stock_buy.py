"""Buying a thin stock: an order that is large against the symbol's average daily volume.

Pumping works only where little trades: a buy worth a visible share of a day's volume moves
the price. The finding grows with the order's share of ADV, up to `max_weight`. Known false
positives: small-cap enthusiasts, news-driven interest (the campaign and market-surveillance
detectors, not this one, tell them apart by who is buying and how the market moves).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, number, positive


class ThinState(msgspec.Struct):
    """Nothing to remember: a symbol's liquidity is reference data."""


class ThinStockBuy:
    name: ClassVar[str] = "thin_stock_buy"
    stage: ClassVar[str] = "symbol"
    types: ClassVar[frozenset[str]] = frozenset({"order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.min_adv_share = positive(params, "min_adv_share", self.name)
        self.weight = number(params, "weight", self.name)
        self.max_weight = number(params, "max_weight", self.name)

    def initial(self) -> ThinState:
        return ThinState()

    def score(self, event: Any, state: ThinState, ev: Evidence) -> None:
        adv = ev.instrument.adv_shares if ev.instrument is not None else None
        if event.side != "buy" or not adv:
            return
        share = event.qty / adv
        if share >= self.min_adv_share:
            ev.findings.append(Finding(self.name, min(self.max_weight, self.weight + math.log(share / self.min_adv_share))))

    def learn(self, event: Any, state: ThinState, ev: Evidence) -> None:
        return None
