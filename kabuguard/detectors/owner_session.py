"""Owner's session: trading new to the account, from the owner's own device and network, is the owner's.

The account stage judges an order against the account's own trading (a new symbol, a new
segment, an odd size, whole positions sold, a thin stock bought on the proceeds) and the login
against the account's own devices and networks, and the policy adds both up as if they were
independent. They are not: a takeover shows behaviour new to the account *because* someone else
is trading, on someone else's machine. When the login behind the session is the owner's own
recognised one (its log-odds at most `own_session_llr`), the person trading is the owner, and
the owner trying a first small cap on the day of the news, or rotating into one, explains the
new behaviour; its evidence is discounted by `share` (`owner_session`, negative). Market and
cross-account evidence (thin stock, concentrated positions, suspect flow, campaigns) is left
whole: the attackers' own accounts trade from their own machines too. Known misses: malware or
remote access on the customer's own device, which this discount would shelter.

    >>> from kabuguard.detectors.base import Evidence, Finding
    >>> from kabuguard.events.reader import event_from_dict
    >>> owner = OwnerSession({"share": 0.5, "own_session_llr": -2.0,
    ...     "habit_findings": ["new_symbol", "new_segment"]})
    >>> buy = event_from_dict({"event_id": "o1", "type": "order", "account_id": "A", "order_id": "o1",
    ...     "ts": "2025-03-03T10:00:00.000+09:00", "symbol": "9999", "side": "buy", "qty": 100,
    ...     "order_type": "market"})
    >>> ev = Evidence(); ev.session_llr = -5.0  # the owner's phone at home
    >>> ev.findings += [Finding("new_symbol", 1.5), Finding("new_segment", 1.0), Finding("thin_stock_buy", 2.5)]
    >>> owner.score(buy, owner.initial(), ev); ev.findings[-1]
    Finding(reason='owner_session', weight=-1.25)
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import REASONS, Evidence, Finding, names, number, share


class OwnerSessionState(msgspec.Struct):
    """Nothing to remember: the session's risk comes with the event's evidence."""


class OwnerSession:
    name: ClassVar[str] = "owner_session"
    stage: ClassVar[str] = "final"
    types: ClassVar[frozenset[str]] = frozenset({"order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.share = share(params, "share", self.name)
        self.own_session_llr = number(params, "own_session_llr", self.name)
        self.habit = names(params, "habit_findings", self.name, REASONS)

    def initial(self) -> OwnerSessionState:
        return OwnerSessionState()

    def score(self, event: Any, state: OwnerSessionState, ev: Evidence) -> None:
        if ev.session_llr > self.own_session_llr:
            return
        habit = sum(f.weight for f in ev.findings if f.reason in self.habit and f.weight > 0)
        if habit > 0:
            ev.findings.append(Finding(self.name, -self.share * habit))

    def learn(self, event: Any, state: OwnerSessionState, ev: Evidence) -> None:
        return None
