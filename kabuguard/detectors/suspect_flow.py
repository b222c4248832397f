"""Suspect flow: who else trades a thin stock that hijacked-looking sessions have been buying.

A pump needs buyers and a seller. The buyers are hijacked accounts, each only mildly odd and,
in the stealthier campaigns, spread over a day or two rather than packed into one hour; the
seller is the attackers' own account, trading from its own usual machine, whose only tell is
whom it sells to. Per thin symbol, the accounts whose buys came from a risky session (stage 1's
session risk at least `risky_session_llr`) with strong evidence overall (the order's findings so
far plus the session's risk, at least `suspect_llr`) are remembered for `lookback_hours`:

- a sell by another account while such buys are recent scores `sell_into_suspect_buying`
  (`sell_weight` plus the log of how many accounts bought);
- a buy from a session that leans foreign (log-odds above the policy's `foreign_session_llr`,
  0: more likely someone else than the owner), after at least `min_buyers` such accounts,
  scores `buy_with_suspect_buyers`.

A news crowd buys from its own devices and homes, so it leaves no suspect buys behind it; when a
few of its buyers happen to be on risky sessions (a new phone, a trip), the rest are still on
sessions that do not lean foreign, including customers with too little history to be
recognised, whose log-odds sit between the owner's line and 0.
Known false positives: a holder of a micro cap selling by chance in the days a hijacked account
bought it; a customer on a new phone buying the same name.

    >>> from kabuguard.detectors.base import Evidence
    >>> from kabuguard.events.reader import event_from_dict
    >>> flow = SuspectFlow({"lookback_hours": 72, "risky_session_llr": 2.0, "suspect_llr": 4.0,
    ...     "min_buyers": 2, "sell_weight": 6.0, "buy_weight": 2.0, "max_adv_value_jpy": 2e9, "habit_discount": 2.5,
    ...     "foreign_session_llr": 0.0, "fx_jpy": {}})
    >>> state = flow.initial()
    >>> def order(account, side, minute):
    ...     return event_from_dict({"event_id": f"o{minute}", "type": "order", "account_id": account,
    ...         "ts": f"2025-03-03T10:{minute:02d}:00.000+09:00", "order_id": f"o{minute}",
    ...         "symbol": "9999", "side": side, "qty": 100, "order_type": "market"})
    >>> ev = Evidence(); ev.session_llr = 5.0  # a hijacked account buys
    >>> flow.score(order("V1", "buy", 1), state, ev); flow.learn(order("V1", "buy", 1), state, ev)
    >>> ev = Evidence()  # the attackers' own account sells, from its usual machine
    >>> flow.score(order("X", "sell", 9), state, ev)
    >>> ev.findings
    [Finding(reason='sell_into_suspect_buying', weight=6.0)]
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors._window import others, prune, stamp
from kabuguard.detectors.base import Evidence, Finding, count, duration_us, number, param
from kabuguard.detectors.money import thin
from kabuguard.events.model import account_key

_OWN = frozenset({"sell_into_suspect_buying", "buy_with_suspect_buyers"})


class SuspectFlowState(msgspec.Struct):
    buyers: dict[str, int] = {}  # account -> time of its latest suspect buy of the symbol


class SuspectFlow:
    name: ClassVar[str] = "suspect_flow"
    stage: ClassVar[str] = "symbol"
    types: ClassVar[frozenset[str]] = frozenset({"order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.lookback_us = duration_us(params, "lookback_hours", self.name)
        self.risky_llr = number(params, "risky_session_llr", self.name)
        self.suspect_llr = number(params, "suspect_llr", self.name)
        self.min_buyers = count(params, "min_buyers", self.name)
        self.sell_weight = number(params, "sell_weight", self.name)
        self.buy_weight = number(params, "buy_weight", self.name)
        self.max_adv_value = number(params, "max_adv_value_jpy", self.name)
        self.fx_jpy = param(params, "fx_jpy", self.name)
        self.foreign_llr = number(params, "foreign_session_llr", self.name)
        self.habit_discount = number(params, "habit_discount", self.name)

    def initial(self) -> SuspectFlowState:
        return SuspectFlowState()

    def _thin(self, ev: Evidence) -> bool:
        return thin(ev.instrument, self.fx_jpy, self.max_adv_value, unknown=True)  # do not rule an unknown out

    def score(self, event: Any, state: SuspectFlowState, ev: Evidence) -> None:
        if not state.buyers or not self._thin(ev):
            return
        key = account_key(event)
        if key in state.buyers and state.buyers[key] > event.ts_us - self.lookback_us:
            return  # the suspect buyer itself: its own session's evidence speaks for it
        count = others(state.buyers, event.ts_us - self.lookback_us, key)
        if not count:
            return
        if event.side == "sell":
            weight = self.sell_weight + math.log(count)
            # A seller who traded the stock long before the suspect buying began (a lookback
            # earlier) sells out of habit; pre-positioning comes just before it.
            first = ev.first_order_us  # the seller's first order in the symbol (account stage)
            if first:
                began = min(t for t in state.buyers.values() if t > event.ts_us - self.lookback_us)
                if first <= began - self.lookback_us:
                    weight -= self.habit_discount
            ev.findings.append(Finding("sell_into_suspect_buying", weight))
        elif count >= self.min_buyers and ev.session_llr > self.foreign_llr:
            ev.findings.append(Finding("buy_with_suspect_buyers",
                                       self.buy_weight + math.log(count / self.min_buyers)))

    def learn(self, event: Any, state: SuspectFlowState, ev: Evidence) -> None:
        if event.side != "buy" or ev.session_llr < self.risky_llr or not self._thin(ev):
            return
        # The order's own evidence so far, without this detector's: no echo from earlier buys.
        evidence = ev.session_llr + sum(f.weight for f in ev.findings if f.reason not in _OWN)
        if evidence >= self.suspect_llr:
            state.buyers = prune(state.buyers, event.ts_us - self.lookback_us)
            stamp(state.buyers, account_key(event), event.ts_us)
